"""Station sources: where ``pyinspect watch`` gets its frames (see ``base.py`` for the contract).

The camera modules import their SDK only when opened, so this package loads without them.
"""

from pyinspect.sources.base import (
    POLICIES,
    Grab,
    IterableSource,
    Source,
    SourceEnded,
    SourceError,
    SourceLost,
)
from pyinspect.sources.folder import FolderSource
from pyinspect.sources.harvesters import HarvestersSource
from pyinspect.sources.pylon import PylonSource
from pyinspect.sources.video import VideoSource

__all__ = [
    "POLICIES",
    "FolderSource",
    "Grab",
    "HarvestersSource",
    "IterableSource",
    "PylonSource",
    "Source",
    "SourceEnded",
    "SourceError",
    "SourceLost",
    "VideoSource",
]
