"""The benchmark's reference endpoints (not part of the product), served like the product is.

`bench/run.py` runs this under gunicorn with the Procfile's own `web:` command, only the app
changed to `refapp:create_app()`, so both are measured with the same workers and settings.

- POST /bare:  returns a constant TwiML string. The cost of Flask + gunicorn + HTTP alone.
- POST /floor: the least I/O a durable triage turn can do: checks the Twilio signature with
  twilio's RequestValidator, reads and writes one session key in Redis, inserts one row into
  PostgreSQL, enqueues one RQ job, returns constant TwiML.

Environment: TWILIO_AUTH_TOKEN, REDIS_URL, DATABASE_URL (the same values the product gets).
The floor's table (`bench_floor_turns`) is created by bench/run.py before the server starts.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import redis
from flask import Flask, Response, request
from rq import Queue
from sqlalchemy import create_engine, text
from twilio.request_validator import RequestValidator

TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>Do you have chest pain or pressure, '
         'or is it hard to breathe? Reply YES or NO.</Message></Response>')
FLOOR_QUEUE = "bench-floor"
SESSION_TTL_SECONDS = 6 * 3600
INSERT = text("INSERT INTO bench_floor_turns (phone, sid, body, at) VALUES (:phone, :sid, :body, :at)")
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS bench_floor_turns (
    id bigserial PRIMARY KEY,
    phone varchar(32) NOT NULL,
    sid varchar(64) NOT NULL,
    body text NOT NULL,
    at timestamptz NOT NULL
)"""


def noop(*args: object) -> None:
    """The floor's job. No worker runs it during the load: enqueueing is the cost measured."""


def create_app() -> Flask:
    app = Flask(__name__)
    token = os.environ["TWILIO_AUTH_TOKEN"]
    # The product's Redis client settings (telehealth/services.py): short timeouts.
    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5,
                                  health_check_interval=30)
    queue = Queue(FLOOR_QUEUE, connection=client)
    url = os.environ["DATABASE_URL"]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, connect_args={"connect_timeout": 3})

    @app.post("/bare")
    def bare() -> Response:
        return Response(TWIML, status=200, mimetype="text/xml")

    @app.post("/floor")
    def floor() -> Response:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not RequestValidator(token).validate(request.url, request.form, signature):
            return Response("invalid Twilio signature", status=403, mimetype="text/plain")
        phone, sid = request.form.get("From", ""), request.form.get("MessageSid", "")
        key = f"bench:floor:{phone}"
        raw = client.get(key)
        session = json.loads(raw) if raw else {"turns": 0}
        session.update(turns=session["turns"] + 1, last_sid=sid)
        client.set(key, json.dumps(session, separators=(",", ":")), ex=SESSION_TTL_SECONDS)
        with engine.begin() as conn:
            conn.execute(INSERT, {"phone": phone, "sid": sid, "body": request.form.get("Body", ""),
                                  "at": datetime.now(timezone.utc)})
        queue.enqueue_call("refapp.noop", args=(sid,))
        return Response(TWIML, status=200, mimetype="text/xml")

    return app
