"""Models bundled with the package, reachable by name (e.g. `si-demo`)."""
from pathlib import Path
from typing import Optional

DATA = Path(__file__).resolve().parent / "data"

# name -> (checkpoint, exported TorchScript file), both inside hienet/data/
BUNDLED = {
    "si-demo": ("si-demo.pth", "si-demo.pt"),
}


def bundled_model_path(name: str, exported: bool = False) -> Optional[str]:
    """Path of a bundled model, or None if `name` is not a bundled name."""
    if name not in BUNDLED:
        return None
    path = DATA / BUNDLED[name][1 if exported else 0]
    if not path.is_file():
        raise FileNotFoundError(f"bundled model {name!r} is missing from the installation: {path}")
    return str(path)
