"""The seeds' FastAPI demo app, packaged by slipway's recipes (alpine.toml, slim.toml)."""
import os

from fastapi import FastAPI

app = FastAPI(title="fastapi-demo")


@app.get("/")
def root():
    return {"message": "Hello from slipway", "env": os.environ.get("APP_ENV")}


@app.get("/health")
def health():
    return {"status": "ok"}
