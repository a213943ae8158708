"""Dataparsers: single scenes (``nid-scene``) and scene collections (``nid-collection``)."""

from nid_nerf.dataparsers.collection_dataparser import NIDCollectionDataParser, NIDCollectionDataParserConfig
from nid_nerf.dataparsers.outputs import SCENE_INDEX
from nid_nerf.dataparsers.scene_dataparser import NIDSceneDataParser, NIDSceneDataParserConfig

__all__ = [
    "SCENE_INDEX",
    "NIDCollectionDataParser",
    "NIDCollectionDataParserConfig",
    "NIDSceneDataParser",
    "NIDSceneDataParserConfig",
]
