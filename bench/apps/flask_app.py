"""A Flask JSON route: GET /json answers {"message": "Hello, World!"}."""

from flask import Flask

app = Flask(__name__)


@app.route("/json")
def json_route():
    return {"message": "Hello, World!"}
