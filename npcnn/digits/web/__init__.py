"""The web app's machinery, one job per module; ``app.py`` keeps the routes, the factory and the
command line.

- ``requests``   reading and bounding request bodies; errors -> HTTP statuses and JSON answers
- ``metrics``    the Prometheus metrics of the server
- ``hooks``      around every request: request ids, security headers, counting, timing, logging
- ``limits``     one process's state: readiness, draining, heavy-request slots
- ``processes``  serving in several processes (waitress and its supervisor, gunicorn)
- ``corrections`` ``/api/feedback``: reading a correction, rate limits, undo tokens
"""
