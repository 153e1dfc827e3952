"""Loading a policy: a shipped policy's name or a TOML file, validated into a Policy.

Owns: the only I/O of sipwatch.policy (reading one file), finding a shipped policy by name
(`NAME.toml` in the same catalog directories as probe sets, sipwatch.config.catalog_dirs),
and turning every problem into one ConfigError whose message names the key and the reason.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from sipwatch.errors import ConfigError
from sipwatch.policy.schema import Policy


def policy_path(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """The file a policy reference means. A bare name ("default") is a shipped policy; a
    path (a suffix or a slash) is taken as is, or from `relative_to` when it is relative."""
    from sipwatch.catalog import catalog_dirs

    ref = Path(name_or_path)
    if ref.suffix or len(ref.parts) > 1:
        return ref if ref.is_absolute() or relative_to is None else relative_to / ref
    for folder in catalog_dirs("policies"):
        candidate = folder / f"{ref.name}.toml"
        if candidate.is_file():
            return candidate
    where = ", ".join(str(d) for d in catalog_dirs("policies"))
    raise ConfigError(f"no policy named {ref.name!r} (looked in {where})")


def load_policy(name_or_path: str | Path, *, relative_to: Path | None = None) -> Policy:
    """Read and validate a policy. Raises ConfigError."""
    path = policy_path(name_or_path, relative_to=relative_to)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"policy file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib.load decodes the bytes itself
        raise ConfigError(f"policy file {path} is not UTF-8 (TOML is): {exc}") from None
    except RecursionError:  # tomllib reads nested arrays and inline tables recursively
        raise ConfigError(f"policy file {path}: values nested too deeply") from None
    return parse_policy(data, source=str(path))


def parse_policy(data: object, *, source: str = "policy") -> Policy:
    """Validate already-parsed TOML. Raises ConfigError naming each bad key."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"invalid policy ({source}):"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc or '(top level)'}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
