"""The sample dataset: the files under ``demo/sample_dataset``.

``README.yml`` becomes the dataset's README (dserver indexes it for
free-text search), ``TAGS`` lists its tags one per line, and every file
under ``data/`` becomes an item. ``extra_items`` adds generated files, to
watch a bigger copy.
"""
from dataclasses import dataclass
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_dataset"
NAME = "weather-station-sample"


@dataclass
class SampleDataset:
    name: str
    readme: str
    tags: list
    items: dict  # relpath -> bytes


def load_sample(extra_items=0, directory=SAMPLE_DIR):
    data_dir = directory / "data"
    items = {path.relative_to(data_dir).as_posix(): path.read_bytes()
             for path in sorted(data_dir.rglob("*")) if path.is_file()}
    for number in range(extra_items):
        items[f"extra/item_{number:04d}.txt"] = f"generated item {number}\n".encode()
    tags = [line.strip() for line in (directory / "TAGS").read_text().splitlines()
            if line.strip()]
    return SampleDataset(NAME, (directory / "README.yml").read_text(), tags, items)
