"""Talks to the studio's Gradio UI over HTTP the way its page does (tests only).

The page uploads files to ``/gradio_api/upload``, joins the queue with
``/gradio_api/queue/join`` and reads results from ``/gradio_api/queue/data``
(Server-Sent Events). Driving the same routes directly lets the security tests
send what a browser never would, such as a ``FileData`` naming a server path.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Component types whose values are files (``FileData``) in Gradio 6.
FILE_COMPONENTS = frozenset(
    {
        "file",
        "image",
        "video",
        "audio",
        "gallery",
        "model3d",
        "uploadbutton",
        "imageeditor",
        "imageslider",
        "annotatedimage",
        "simpleimage",
        "multimodaltextbox",
        "dataset",
    }
)


def file_data(path: str | Path, name: str | None = None) -> dict[str, Any]:
    path = str(path)
    return {
        "path": path,
        "orig_name": name or Path(path).name,
        "meta": {"_type": "gradio.FileData"},
    }


@dataclass
class Event:
    """One event (a Gradio "dependency") of the page, as /config describes it."""

    index: int
    trigger_id: int
    trigger: str
    input_types: list[str]
    input_ids: list[int]

    @property
    def takes_files(self) -> bool:
        return any(kind in FILE_COMPONENTS for kind in self.input_types)


@dataclass
class GradioPage:
    """One browser: a cookie jar, a session hash, and the page's /config."""

    client: httpx.Client
    config: dict = field(default_factory=dict)
    session_hash: str = field(default_factory=lambda: secrets.token_hex(6))

    @classmethod
    def open(cls, client: httpx.Client) -> GradioPage:
        client.get("/").raise_for_status()  # mints the owner cookie
        config = client.get("/config").raise_for_status().json()
        return cls(client, config)

    @property
    def components(self) -> dict[int, dict]:
        return {c["id"]: c for c in self.config["components"]}

    def events(self) -> list[Event]:
        components = self.components
        found = []
        for dep in self.config["dependencies"]:
            for target_id, trigger in dep["targets"]:
                found.append(
                    Event(
                        index=dep["id"],
                        trigger_id=target_id,
                        trigger=trigger,
                        input_types=[components[i]["type"] for i in dep["inputs"]],
                        input_ids=list(dep["inputs"]),
                    )
                )
        return found

    def event_for(self, elem_id: str, trigger: str) -> Event:
        ids = {c["id"] for c in self.config["components"] if c["props"].get("elem_id") == elem_id}
        return next(e for e in self.events() if e.trigger_id in ids and e.trigger == trigger)

    def default_value(self, component_id: int) -> Any:
        return self.components[component_id]["props"].get("value")

    def upload(self, *paths: Path) -> list[dict[str, Any]]:
        files = [("files", (p.name, p.read_bytes())) for p in paths]
        response = self.client.post("/gradio_api/upload", files=files)
        response.raise_for_status()
        return [file_data(path, p.name) for path, p in zip(response.json(), paths, strict=True)]

    def join(self, event: Event, data: list[Any], event_data: Any = None) -> httpx.Response:
        body = {
            "data": data,
            "event_data": event_data,
            "fn_index": event.index,
            "trigger_id": event.trigger_id,
            "session_hash": self.session_hash,
        }
        return self.client.post("/gradio_api/queue/join", json=body)

    def run(self, event: Event, data: list[Any], event_data: Any = None) -> dict:
        """Join the queue and wait for the event's ``process_completed`` message."""
        joined = self.join(event, data, event_data)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        params = {"session_hash": self.session_hash}
        with self.client.stream("GET", "/gradio_api/queue/data", params=params) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message["msg"] == "process_completed":
                    return message
        raise AssertionError(f"event {event.index} never completed")
