"""The seed's hello app, unchanged: the same callable every server in scripts/bench serves."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["Hello WSGI World!\n".encode()]
