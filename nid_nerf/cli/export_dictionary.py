"""``nid-export-dictionary``: write dictionary.pt from a trained nid-dict checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from nid_nerf.errors import NIDInputError, install_excepthook


def main(load_config: Path, output: Path | None = None) -> Path:
    from nid_nerf.fields.dictionary import export_dictionary
    from nid_nerf.mesh.load import load_sdf_pipeline

    _, pipeline, _ = load_sdf_pipeline(load_config)
    model = pipeline.model
    if not getattr(model, "exports_dictionary", False):
        raise NIDInputError(
            f"{load_config} is not a nid-dict run (no learned scene codes); pass the config.yml of ns-train nid-dict"
        )
    output = output or Path(load_config).parent / "dictionary.pt"
    path = export_dictionary(model, output)
    print(f"dictionary ({model.config.num_experts} experts, top-{model.config.top_k}, "
          f"{model.num_scenes} scene codes) -> {path}")
    return path


def entrypoint() -> None:
    install_excepthook()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of a nid-dict run")
    parser.add_argument("--output", type=Path, default=None, help="default: dictionary.pt next to config.yml")
    args = parser.parse_args()
    main(args.load_config, args.output)


if __name__ == "__main__":
    entrypoint()
