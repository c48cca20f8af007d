"""A Flask app served by gunicorn, packaged by slipway (alpine.toml)."""
import os

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def root():
    return jsonify(message="Hello from slipway", env=os.environ.get("APP_ENV"))


@app.get("/health")
def health():
    return jsonify(status="ok")
