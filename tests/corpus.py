"""The corpus of real notifications in tests/data/corpus, with its index.

Each entry of ``index.toml`` names one payload file, where it came from and
what was adapted, the request that delivers it and what its sender needs
back: status, accepted and ignored counts, the events it stands for and
the dataset URIs the inbox must hold afterwards.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the fast tier runs there too)
    import tomli as tomllib

CORPUS = Path(__file__).parent / "data" / "corpus"
CORPUS_BUCKET = "dtool-corpus"
CORPUS_BASE_URI = f"s3://{CORPUS_BUCKET}"


@dataclass(frozen=True)
class Payload:
    file: str
    sender: str
    method: str
    path: str
    content_type: Optional[str]
    headers: Dict[str, str]
    status: int
    accepted: int
    ignored: int
    faults: int
    events: List[Tuple[str, str, Optional[str]]]
    datasets: List[str]

    @property
    def body(self) -> bytes:
        return (CORPUS / self.file).read_bytes()

    def request_headers(self):
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return headers


def load_corpus():
    index = tomllib.loads((CORPUS / "index.toml").read_text())
    payloads = []
    for entry in index["payload"]:
        method, path = entry["route"].split(" ", 1)
        payloads.append(Payload(
            file=entry["file"], sender=entry["sender"], method=method, path=path,
            content_type=entry.get("content_type"), headers=entry.get("headers", {}),
            status=entry["status"], accepted=entry["accepted"], ignored=entry["ignored"],
            faults=entry["faults"], events=[tuple(e) for e in entry["events"]],
            datasets=entry["datasets"]))
    return payloads


PAYLOADS = load_corpus()
