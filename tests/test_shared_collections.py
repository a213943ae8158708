"""The standard development collection in ../shared (rendered blobs) loads as one dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nid_nerf.dataparsers import SCENE_INDEX, NIDCollectionDataParserConfig

BLOBS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "collections" / "blobs"

pytestmark = pytest.mark.skipif(
    not (BLOBS / "collection.json").is_file(), reason="needs ../shared/data/collections/blobs"
)


def test_blob_collection_few_view():
    config = NIDCollectionDataParserConfig(data=BLOBS, num_train_views=3, check_images=False)
    out = config.setup().get_dataparser_outputs("train")
    assert out.metadata["num_scenes"] == 199 and len(out.image_filenames) == 3 * 199
    assert torch.equal(out.metadata[SCENE_INDEX], torch.arange(199).repeat_interleave(3))
    assert out.metadata["scene_names"][0] == "blob_000" and "blob_168" not in out.metadata["scene_names"]
