"""The ``champion`` alias when several processes register versions at the same time.

The registry's rule (``ncsn.tracking.registry``) reads the champion, compares FIDs and moves the alias:
two processes that read the same champion can both move it, and the later write wins even when
its FID is the worse one. MLflow has no compare-and-set on aliases, so each registering process
ends with :func:`converge_champion`, which repairs that:

1. Once a new version's files are checked, it gets the tag ``ncsn.verified = true``
   (:data:`VERIFIED_TAG`): only such versions are candidates, so a version whose process died
   before its checks never becomes champion this way.
2. Then, in a loop: read the alias, then every version. If verified versions of the same dataset
   and FID kind have a strictly lower FID than the champion, point the alias at the best of them
   (lowest FID, then lowest version number) whose files are still in the store, and repeat;
   otherwise stop. (A champion whose files went missing may have been replaced by a worse
   version: the loop does not bring it back.)

Why this converges on the best FID. Every alias write (the rule's or this loop's) is followed by
a read of the alias and of all versions by the same process. Take the last write: its writer read
afterwards every version whose own process had finished its reads earlier, and found none better;
every other process read the alias after that write and its own version in the list, and found
none better. So no verified version beats the final champion. A champion of another dataset or
FID kind is left alone (the rule does not compare those), and the loop stops after
``max_rounds`` reads whatever happens.
"""

from __future__ import annotations

import logging
import math
import time

from ncsn.tracking.registered_model import files_problem

log = logging.getLogger(__name__)

VERIFIED_TAG = "ncsn.verified"
CHAMPION = "champion"


def _fid(version, kind: str) -> float:
    try:
        return float(version.tags.get(kind, "nan"))
    except ValueError:
        return math.nan


def set_champion(client, name: str, version: str, attempts: int = 5) -> None:
    """Point ``champion`` at ``version``, retrying when a concurrent first write of the alias wins.

    Two processes creating the alias at the same moment make one insert fail on the server
    (a unique-constraint error, reported as BAD_REQUEST); the retry then updates the alias.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.set_registered_model_alias(name, CHAMPION, version)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def mark_verified(client, name: str, version: str) -> None:
    """Tag ``name`` v``version`` as registered and checked: a candidate for :func:`converge_champion`."""
    client.set_model_version_tag(name, version, VERIFIED_TAG, "true")


def converge_champion(client, name: str, kind: str, dataset: str, max_rounds: int = 20) -> str | None:
    """Move ``champion`` to the best verified version of ``dataset`` and FID ``kind`` (see module docstring).

    :param client: an ``MlflowClient`` of the store.
    :return: the champion's version after the last read, or None when there is no champion.
    """
    from mlflow.exceptions import MlflowException

    for _ in range(max_rounds):
        try:
            champion = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        if champion.tags.get("dataset") != dataset or champion.tags.get("fid_metric") != kind:
            return str(champion.version)
        candidates = [v for v in client.search_model_versions(f"name = '{name}'")
                      if v.tags.get(VERIFIED_TAG) == "true" and v.tags.get("dataset") == dataset
                      and v.tags.get("fid_metric") == kind and math.isfinite(_fid(v, kind))]
        if not candidates:
            return str(champion.version)
        held = _fid(champion, kind)
        better = sorted((v for v in candidates if not _fid(v, kind) >= held),  # all of them if held is NaN
                        key=lambda v: (_fid(v, kind), int(v.version)))
        best = next((v for v in better if files_problem(client, name, str(v.version)) is None), None)
        if best is None:
            return str(champion.version)
        log.info("%s: v%s (%s %.4g) beats champion v%s (%.4g), registered concurrently; moving the alias",
                 name, best.version, kind, _fid(best, kind), champion.version, held)
        set_champion(client, name, best.version)
    log.warning("%s: the champion alias still moved after %d rounds; the next registration will settle it",
                name, max_rounds)
    return str(champion.version)
