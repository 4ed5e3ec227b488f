"""The V2MOM YAML document format, shared by the CLI (`v2mom create -f`) and the demo seed."""
