"""``nid-export-dictionary``: write dictionary.pt from a trained nid-dict checkpoint, with a freshly fitted code
encoder (``--encoder-steps``; 0 writes none), e.g. for a run pretrained before nid-dict fitted one itself::

    nid-export-dictionary --load-config outputs/chair/nid-dict/<run>/config.yml --encoder-steps 1500
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nid_nerf.errors import NIDInputError, install_excepthook


def main(load_config: Path, output: Path | None = None, encoder_steps: int | None = None) -> Path:
    from nid_nerf.engine.datamanager import scene_indices
    from nid_nerf.fields.code_encoder import fit_encoder_to_dictionary
    from nid_nerf.fields.dictionary import export_dictionary
    from nid_nerf.mesh.load import load_sdf_pipeline

    _, pipeline, _ = load_sdf_pipeline(load_config)
    model = pipeline.model
    if not getattr(model, "exports_dictionary", False):
        raise NIDInputError(
            f"{load_config} is not a nid-dict run (no learned scene codes); pass the config.yml of ns-train nid-dict"
        )
    output = output or Path(load_config).parent / "dictionary.pt"
    steps = model.config.encoder_steps if encoder_steps is None else encoder_steps
    encoder = None
    if steps > 0:
        dataset = pipeline.datamanager.train_dataset
        encoder, _ = fit_encoder_to_dictionary(model, dataset, steps, scene_indices(dataset))
    path = export_dictionary(model, output, encoder=encoder)
    print(f"dictionary ({model.config.num_experts} experts, top-{model.config.top_k}, "
          f"{model.num_scenes} scene codes{', code encoder' if encoder is not None else ''}) -> {path}")
    return path


def entrypoint() -> None:
    install_excepthook()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of a nid-dict run")
    parser.add_argument("--output", type=Path, default=None, help="default: dictionary.pt next to config.yml")
    parser.add_argument("--encoder-steps", type=int, default=None,
                        help="steps of fitting the code encoder (default: the run's encoder_steps; 0: no encoder)")
    args = parser.parse_args()
    main(args.load_config, args.output, args.encoder_steps)


if __name__ == "__main__":
    entrypoint()
