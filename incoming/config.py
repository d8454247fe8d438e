"""
Configuration: the command-line options of ``twistd incoming`` and the
optional TOML config file, merged into one immutable L{Config}.

Command-line values win over the config file, which wins over the defaults.
"""

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import attrs
from twisted.python import usage

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text):
    """
    Seconds from C{"90"}, C{"90s"}, C{"10m"}, C{"12h"} or C{"1d"}
    (fractions allowed).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text).lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 10m, 12h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text):
    """
    Bytes from C{"1048576"}, C{"512K"}, C{"8M"}, C{"8MiB"}, C{"64G"} or
    C{"1T"}; C{0} means no limit where a limit is asked for.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 8M, 64G)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _flag(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _http_url(text):
    text = str(text).strip()
    parts = urlsplit(text)
    if text and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise ValueError(f"not an absolute http(s) URL: {text!r}")
    return text


def _origins(text):
    if isinstance(text, (list, tuple)):
        return tuple(str(origin).strip() for origin in text if str(origin).strip())
    return tuple(origin.strip() for origin in str(text).split(",") if origin.strip())


@attrs.frozen
class Config:
    """
    Everything the server needs to know, already parsed and checked.
    Durations are in seconds, sizes in bytes.
    """

    # A listen queue for hundreds of browsers connecting at once: with
    # Twisted's default of 50, the rest wait a second for a SYN retransmit.
    frontend: str = "tcp:4000:backlog=1024"
    backend: str = "tcp:4001:interface=127.0.0.1"
    storage: Path = Path("incoming-storage")
    max_size: int = 64 << 30
    chunk_size: int = 0
    idle_timeout: float = 12 * 3600.0
    handover_timeout: float = 55.0
    confirmation_timeout: float = 600.0
    handover_retry_period: float = 24 * 3600.0
    receive_timeout: float = 120.0
    retention: float = 24 * 3600.0
    sweep_interval: float = 3600.0
    cors_origins: tuple = ("*",)
    behind_proxy: bool = False
    ticketless_handover: str = ""
    no_digest: bool = False


# name in Config, how to parse it, help text (the default is added from Config)
_SETTINGS = [
    ("frontend", str, "Endpoint for the public frontend (tus, incoming.js)."),
    ("backend", str, "Endpoint for the private backend API."),
    ("storage", Path, "Directory where uploads and their state are stored."),
    ("max_size", parse_size, "Largest upload accepted, e.g. 64G (0: no limit)."),
    (
        "chunk_size",
        parse_size,
        "Largest chunk incoming.js sends in one request, e.g. 50M to stay "
        "under a reverse proxy's body size limit (0: no limit; incoming.js "
        "sizes its chunks by the speed of the connection).",
    ),
    ("idle_timeout", parse_duration, "Cancel an upload after this long without data."),
    ("handover_timeout", parse_duration, "Time limit of one handover request."),
    (
        "confirmation_timeout",
        parse_duration,
        "Cancel when the backend answered 'wait' and has not called "
        "finish_upload within this time.",
    ),
    (
        "handover_retry_period",
        parse_duration,
        "Keep retrying a failing handover this long before the upload fails.",
    ),
    (
        "receive_timeout",
        parse_duration,
        "Drop a client connection that sends nothing for this long while "
        "the server reads from it (the bytes received so far are kept).",
    ),
    (
        "retention",
        parse_duration,
        "Keep the record of a finished, cancelled or failed upload this long "
        "so clients can still learn its outcome.",
    ),
    ("sweep_interval", parse_duration, "How often expired uploads are swept."),
    ("cors_origins", _origins, "Comma-separated origins allowed by CORS, or *."),
    (
        "ticketless_handover",
        _http_url,
        "Accept tus uploads without a ticket and hand them over to this URL "
        "(off unless given).",
    ),
]

# Switches: name in Config, help text.
_FLAGS = [
    (
        "behind_proxy",
        "Build upload URLs from X-Forwarded-Proto/-Host or Forwarded "
        "(only behind a reverse proxy that sets them).",
    ),
    (
        "no_digest",
        "Do not compute the sha256 of uploads (the handover's sha256 field "
        "is then empty); saves about half a CPU second per GiB.",
    ),
]

_DEFAULT_TEXT = {
    "max_size": "64G",
    "chunk_size": "0",
    "idle_timeout": "12h",
    "handover_timeout": "55s",
    "confirmation_timeout": "600s",
    "handover_retry_period": "24h",
    "receive_timeout": "120s",
    "retention": "24h",
    "sweep_interval": "1h",
    "cors_origins": "*",
    "ticketless_handover": "off",
}


def _option_name(name):
    return name.replace("_", "-")


class Options(usage.Options):
    """
    The options of C{twistd incoming}.
    """

    synopsis = "[options]"
    longdesc = (
        "Incoming!! receives large browser uploads (tus 1.0 with an upload "
        "ticket) and hands the finished files over to a web app backend. "
        "Durations take s, m, h or d; sizes take K, M, G or T. Every option "
        "can also be set in the TOML file given with --config, by its name "
        "(dashes or underscores)."
    )
    optFlags = [[_option_name(name), None, text] for name, text in _FLAGS]
    optParameters = [["config", "c", None, "TOML file with any of the options below."]] + [
        [
            _option_name(name),
            None,
            None,
            f"{text} [default: {_DEFAULT_TEXT.get(name, getattr(Config(), name))}]",
        ]
        for name, _, text in _SETTINGS
    ]

    def postOptions(self):
        try:
            self["app_config"] = build_config(self)
        except ValueError as e:
            raise usage.UsageError(str(e))


def _read_config_file(path):
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}")
    known = {name for name, _, _ in _SETTINGS} | {name for name, _ in _FLAGS}
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"config file {path}: unknown setting {key!r}")
        values[name] = value
    return values


def build_config(options):
    """
    Merge the config file named in C{options["config"]} (if any) and the
    command-line C{options} into a L{Config}.
    """
    raw = {}
    if options.get("config"):
        raw.update(_read_config_file(options["config"]))
    for name, _, _ in _SETTINGS:
        value = options.get(_option_name(name))
        if value is not None:
            raw[name] = value
    parsed = {}
    for name, _ in _FLAGS:
        if options.get(_option_name(name)):
            raw[name] = True
        if name in raw:
            try:
                parsed[name] = _flag(raw[name])
            except ValueError as e:
                raise ValueError(f"--{_option_name(name)}: {e}")
    for name, parse, _ in _SETTINGS:
        if name in raw:
            try:
                parsed[name] = parse(raw[name])
            except (TypeError, ValueError) as e:
                raise ValueError(f"--{_option_name(name)}: {e}")
    return Config(**parsed)
