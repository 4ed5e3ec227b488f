"""The mail templates: a plain-text part and an HTML part of the same message (Jinja2).

They live in code rather than in template files so that every install of the
package (the Docker image's ``pip install .`` included) carries them. The
HTML one is rendered with autoescaping on: titles, bodies, names and comments
come from people, and ``<script>`` in a title must arrive as text.
"""

TEXT = """\
Hello {{ recipient_name }},

{{ title }}

{{ body }}
{% if facts %}
{% for label, value in facts %}{{ label }}: {{ value }}
{% endfor %}{% endif %}
{% if link %}{{ action }}: {{ link }}
{% endif %}
--
V2MOM
{% if unsubscribe_url %}You get this because {{ reason }}. Stop these emails: {{ unsubscribe_url }}
{% endif %}"""

HTML = """\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ title }}</title></head>
<body style="font-family: sans-serif; line-height: 1.4; color: #222;">
<p>Hello {{ recipient_name }},</p>
<h2 style="font-size: 1.2em;">{{ title }}</h2>
{% for paragraph in paragraphs %}<p>{% for line in paragraph %}{{ line }}{% if not loop.last %}<br>{% endif %}{% endfor %}</p>
{% endfor %}
{% if facts %}<table>
{% for label, value in facts %}<tr><th style="text-align: left; padding-right: 1em;">{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>{% endif %}
{% if link %}<p><a href="{{ link }}">{{ action }}</a></p>{% endif %}
<hr>
<p style="color: #666; font-size: 0.9em;">V2MOM{% if unsubscribe_url %}. You get this because {{ reason }}.
<a href="{{ unsubscribe_url }}">Stop these emails</a>{% endif %}</p>
</body>
</html>
"""
