"""SCIM 2.0 provisioning (RFC 7643/7644) for the goals directory, served over HTTP by goals-api.

Every write goes through directory_sync.py, the use case DirectoryService and HRIS events use
(services/goals/README.md, "SCIM provisioning"). Modules: ``schemas`` (the discovery documents and the
attribute definitions), ``filter`` (the filter grammar), ``patch`` (PATCH operations on a resource),
``mapping`` (a person record to a User and back), ``users`` (the use cases), ``http`` (the WSGI app and its
token; goals-api's HTTP side, services/goals/http.py, serves it).
"""
