"""The old Watcher's API, served from the new event store, and the import of the old system's data.

``router`` (the thin handlers of ``/api/{class_div}/...``), ``adapter`` (the old requests as wire events,
and the old reads from the event table), ``stats`` (the old statistics, pure functions), ``timezones``
(the old API's KST rules), ``schemas`` (its request and response bodies), ``importer`` (``watcher import
legacy``). docs/legacy-api.md says what each endpoint answers.
"""
