"""Resources, chosen in one place: the storage the settings name (`storage.assembly`) and the
pseudonymizer, whose key comes from the environment."""

from __future__ import annotations

import dagster as dg

from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR
from ml_assets.storage.assembly import build_storage
from ml_assets.transforms.privacy import Pseudonymize, key_fingerprint, keyed_pseudonymizer


class Pseudonymizer(dg.ConfigurableResource):
    """Keyed pseudonymization of personal data; the key comes from the environment, never code."""

    key: str

    def function(self) -> Pseudonymize:
        return keyed_pseudonymizer(self.key)

    def fingerprint(self) -> str:
        """Tells keys apart without revealing them: recorded with every materialization that
        pseudonymizes, so a changed key is caught before it gives a person a second pseudonym."""
        return key_fingerprint(self.key)


def build_resources(settings) -> dict:
    """The resources of the code location, from its Settings: one place for all of them."""
    return {
        **build_storage(settings),
        "pseudonymizer": Pseudonymizer(key=dg.EnvVar(PSEUDONYM_KEY_ENV_VAR)),
    }
