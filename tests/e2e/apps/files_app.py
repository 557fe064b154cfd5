"""Serves a file through wsgi.file_wrapper: the server may send it with sendfile."""

import os

DATA = os.path.join(os.environ.get("E2E_STATE_DIR", "/tmp"), "file.bin")


def application(environ, start_response):
    if not os.path.exists(DATA):
        with open(DATA, "wb") as f:
            f.write(bytes(range(256)) * 4096)  # 1 MiB with every byte value
    f = open(DATA, "rb")
    if environ["PATH_INFO"] == "/offset":
        f.seek(1000)  # the server sends from the file's current position
    size = os.fstat(f.fileno()).st_size - f.tell()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](f, 65536)
