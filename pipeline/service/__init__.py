"""The query service: ``anpr serve`` owns the lake, the key and the activity log; clients ask it.

- :mod:`.wire`: the framing both ends speak (a JSON request, a JSON reply, Arrow IPC after it).
- :mod:`.peers`: who is on the other end (kernel peer credentials, TLS client certificates).
- :mod:`.handlers`: what each request does, for an authenticated user, by the service's rules.
- :mod:`.server`: the listeners and the pool of query sessions.
- :mod:`.client`: the client the ``anpr`` commands and notebooks use.

Why not Arrow Flight, and the threat model: docs/adr/0004-query-service.md.
"""
