"""Stage ``params``: validate the whole ``params.yaml``.

DVC re-runs a stage only when a parameter it lists changes, so a misspelt key (``bin_widht: 1``)
would otherwise leave every stage "up to date". This stage tracks every key of the file and
validates it (:func:`headpose.params.load_params`, then imports the ``plugins``:
:func:`headpose.registry.load_plugins`, then checks the model keys against the models:
:func:`headpose.models.keys.validate_model_params`): an unknown key stops ``dvc repro`` with one
line naming the closest known key. It is the first stage of ``dvc.yaml``, so ``dvc repro`` runs
it before any other.
"""

from __future__ import annotations

import argparse

from headpose.crops.protocols import protocol_from_params
from headpose.errors import exit_on_error
from headpose.models.keys import validate_model_params
from headpose.params import load_params
from headpose.registry import load_plugins


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="params.yaml")
    args = parser.parse_args(argv)
    params = load_params(args.params).as_dict()  # every key
    load_plugins(params["plugins"])  # each there and importable; may register a head, an arch...
    validate_model_params(params)
    protocol_from_params(params["crop_protocol"])  # a registered crop protocol
    print(f"{args.params}: {len(params)} keys, all known and valid")


if __name__ == "__main__":
    main()
