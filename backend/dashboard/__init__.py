"""The agents' web dashboard (``GET /``): a static page that talks to the REST and Socket.IO
APIs like any other client."""
