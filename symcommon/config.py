"""The configuration file: the original server's keys and defaults, strictly checked.

Configuration is a plain nested dict shaped like the JSON file.  It is built once by
:func:`load_config` (defaults, then the file, then command-line overrides) and passed to
whoever needs it; there is no global copy.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import os
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

Config = dict[str, Any]

MOZILLA_SYMBOL_SERVER = "https://symbols.mozilla.org/"


def _log_defaults(name: str) -> dict[str, Any]:
    return {"path": f"{name}.log", "level": 20, "maxFiles": 5, "maxFileSizeMB": 50}


def _connection_defaults() -> dict[str, Any]:
    """Bounds on what one client connection may hold (slowloris): see README, Hardening."""
    return {"headerTimeoutSeconds": 20, "bodyTimeoutSeconds": 60, "maxConnections": 4000}


DEFAULTS: Config = {
    "DiskCache": {
        "cachePath": "cache",
        # Only SymServer needs to reach it: private unless told otherwise.
        "listenAddress": "127.0.0.1",
        "localSymbolDirs": [],
        "maxSizeMB": 2048,
        "port": 8888,
        "symbolURLs": [MOZILLA_SYMBOL_SERVER],
        "retries": 2,
        "retryDelayMs": 500,
        "missingModuleTTLSeconds": 60,
        "downloadTimeoutSeconds": 300,  # a module's whole download, by the wall clock
        "maxSymbolFileMB": 4096,  # decoded size of one downloaded file; larger ones are abandoned
        "downloadsPerStore": 8,  # downloads at once from each symbol store
        "processWorkers": 0,  # parsing worker processes; 0: one per core
        # A cold module of at least this many MB is answered from its .sym at once, and its
        # table built afterwards in the background (0: every module); false: always the table first
        "answerBeforeTable": True,
        "answerBeforeTableMB": 0,
        "maxRequestMB": 32,  # 1,000,000 frames of 64-bit offsets: 25 MB as JSON
        "maxFramesPerRequest": 1000000,
        "maxModulesPerRequest": 5000,
        "maxStacksPerRequest": 100000,
        "maxFetchesPerRequest": 100,
        "maxAnswerMB": 256,
        "debugProtocol": True,
        **_connection_defaults(),
        "log": _log_defaults("DiskCache"),
    },
    "SymServer": {
        "port": 8080,
        "listenAddress": "",  # every address, as the original: the public API
        "memcachedServers": ["127.0.0.1:11211"],
        "DiskCacheServer": "127.0.0.1:8888",
        "DiskCacheServers": [],  # several DiskCaches, modules sharded over them; [] = [DiskCacheServer]
        "maxJobsPerRequest": 10,
        "processes": 0,  # SymServer processes on the port; 0: one per core
        "frameCacheEntries": 50000,
        "frameCacheSeconds": 60,
        "maxRequestMB": 32,  # 1,000,000 frames of 64-bit offsets: 25 MB as JSON
        "maxFramesPerRequest": 1000000,
        "maxModulesPerRequest": 5000,
        "maxStacksPerRequest": 100000,
        "maxAnswerMB": 256,
        "debugProtocol": True,
        **_connection_defaults(),
        "log": _log_defaults("SymServer"),
    },
    "quickstart": {
        "memcached": {
            "start": True,
            "restart": False,
            "binary": "memcached",
            "port": 11211,
            "listenAddress": "127.0.0.1",
            "maxMemoryMB": "64",
        },
        "DiskCache": {"start": True, "restart": False},
        "SymServer": {"start": True, "restart": False},
    },
}

#: Keys whose values are filesystem paths (or lists of them), resolved at load time.
PATH_KEYS = {("DiskCache", "cachePath"), ("DiskCache", "localSymbolDirs"),
             ("DiskCache", "log", "path"), ("SymServer", "log", "path")}
PORT_KEYS = {"port"}
#: The servers' own listen addresses (memcached's, under quickstart, goes to memcached as it is).
LISTEN_ADDRESS_KEYS = {"DiskCache.listenAddress", "SymServer.listenAddress"}
HOST_PORT_KEYS = {"DiskCacheServer", "DiskCacheServers"}
#: Counts of processes where 0 means one per core (:func:`per_core`); negative is refused.
PER_CORE_KEYS = {"processWorkers", "processes"}
POSITIVE_KEYS = {"maxSizeMB", "maxFiles", "maxFileSizeMB", "maxJobsPerRequest",
                 "maxRequestMB", "maxFramesPerRequest", "maxModulesPerRequest",
                 "maxStacksPerRequest", "maxFetchesPerRequest", "maxAnswerMB",
                 "headerTimeoutSeconds", "bodyTimeoutSeconds", "maxConnections"}
POSITIVE_KEYS |= {"maxSymbolFileMB", "downloadsPerStore", "downloadTimeoutSeconds"}


def cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def per_core(value: int) -> int:
    """A ``PER_CORE_KEYS`` value as a number of processes: 0 is one per core."""
    return value if value > 0 else cores()


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key."""


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list of strings",
            dict: "an object"}[type(value)]


def _check(value: Any, default: Any, key: str) -> Any:
    """Check ``value`` against the type of ``default``; return the value to use."""
    name = key.rsplit(".", 1)[-1]
    if name == "maxMemoryMB":  # a string in the original's sample; accept a number too
        if isinstance(value, str) and value.isdigit() or type(value) is int:
            if int(value) > 0:
                return str(value)
        raise ConfigError(f"{key} must be a positive whole number of megabytes, got {value!r}")
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be an object, got {value!r}")
        return _merge(default, value, key + ".")
    if type(value) is not type(default):
        raise ConfigError(f"{key} must be {_type_name(default)}, got {value!r}")
    if isinstance(default, list) and not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} must be a list of strings, got {value!r}")
    if key in LISTEN_ADDRESS_KEYS:
        _check_listen_address(value, key)
    if key == "DiskCache.symbolURLs":
        _check_store_urls(value, key)
    if name in HOST_PORT_KEYS:
        _check_host_ports([value] if isinstance(value, str) else value, key)
    if name in PORT_KEYS and not 1 <= value <= 65535:
        raise ConfigError(f"{key} must be a port number (1-65535), got {value}")
    if name in POSITIVE_KEYS and value < 1:
        raise ConfigError(f"{key} must be at least 1, got {value}")
    if type(value) is int and value < 0:
        raise ConfigError(f"{key} must not be negative, got {value}")
    return copy.deepcopy(value)


def _check_host_ports(values: list[str], key: str) -> None:
    """``host:port`` (an IPv6 host in brackets), each once: caught here rather than as a
    DiskCache that never answers, or one that gets twice its share of modules."""
    for value in values:
        host, _, port = value.rpartition(":")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if (not bare or not port.isdigit() or not 1 <= int(port) <= 65535
                or any(c.isspace() or c in "/[]" for c in bare)):
            raise ConfigError(f"{key} must be host:port (e.g. \"127.0.0.1:8888\" or \"[::1]:8888\"), "
                              f"got {value!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key} lists a server twice: {values!r}")


def diskcache_addresses(section: Config) -> list[str]:
    """The DiskCaches a SymServer section names: ``DiskCacheServers``, else ``DiskCacheServer``."""
    return list(section["DiskCacheServers"]) or [section["DiskCacheServer"]]


def _check_store_urls(urls: list[str], key: str) -> None:
    """Symbol stores are fetched over http(s) only: say so at start, not at the first fetch."""
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{key} must hold http:// or https:// URLs, got {url!r}")


def _check_listen_address(value: str, key: str) -> None:
    """An IP address literal, or "" for every address: a name would be resolved at bind time
    to whatever it means then, and a port or URL here is a mistake worth naming at once."""
    if value == "":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{key} must be an IP address such as \"127.0.0.1\" or \"::1\", "
                          f"or \"\" for every address, got {value!r}") from None


def connect_host(listen_address: str) -> str:
    """Where a client on this machine reaches a server listening on ``listen_address``, as
    the host part of a URL (IPv6 in brackets)."""
    if listen_address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen_address == "::":
        return "[::1]"
    return f"[{listen_address}]" if ":" in listen_address else listen_address


def _merge(defaults: Config, given: Config, prefix: str = "") -> Config:
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown configuration key {prefix}{key} (known here: {known})")
        merged[key] = _check(value, defaults[key], prefix + key)
    return merged


def _resolve_paths(config: Config, base: Path) -> None:
    for path in PATH_KEYS:
        section = config
        for key in path[:-1]:
            section = section[key]
        value = section[path[-1]]
        if isinstance(value, list):
            section[path[-1]] = [str((base / item).resolve()) for item in value]
        else:
            section[path[-1]] = str((base / value).resolve())


def load_config(path: str | Path | None = None, json_text: str | None = None,
                overrides: Config | None = None) -> Config:
    """Defaults, overridden by the file (or JSON text), overridden by ``overrides``.

    Relative paths in a file are relative to that file's directory; elsewhere, to the
    current directory.  The result has absolute paths, so it can be handed to another
    process as it is.
    """
    layers: list[tuple[Config, Path]] = []
    if path is not None:
        file_path = Path(path)
        try:
            text = file_path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read configuration file {file_path}: {error.strerror}") from error
        layers.append((_parse_json(text, str(file_path)), file_path.resolve().parent))
    if json_text is not None:
        layers.append((_parse_json(json_text, "--configJSON"), Path.cwd()))
    if overrides:
        layers.append((overrides, Path.cwd()))
    config = copy.deepcopy(DEFAULTS)
    _resolve_paths(config, Path.cwd())
    for given, base in layers:
        checked = _merge(DEFAULTS, given)
        _resolve_paths(checked, base)
        config = _overlay(config, checked, given)
    if not any("DiskCacheServer" in given.get("SymServer", {}) for given, _ in layers):
        # Unless told otherwise, SymServer talks to the DiskCache this config describes.
        host = connect_host(config["DiskCache"]["listenAddress"])
        config["SymServer"]["DiskCacheServer"] = f"{host}:{config['DiskCache']['port']}"
    return config


def _parse_json(text: str, origin: str) -> Config:
    try:
        given = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{origin} is not valid JSON: {error}") from error
    if not isinstance(given, dict):
        raise ConfigError(f"{origin} must hold a JSON object")
    return given


def _overlay(config: Config, checked: Config, given: Config) -> Config:
    """Copy into ``config`` the keys present in ``given``, taking their checked values."""
    result = copy.deepcopy(config)
    for key, value in given.items():
        if isinstance(value, dict):
            result[key] = _overlay(result[key], checked[key], value)
        else:
            result[key] = copy.deepcopy(checked[key])
    return result


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every program takes to find its configuration."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-c", "--config", metavar="FILE", help="JSON configuration file")
    source.add_argument("--configJSON", metavar="JSON", help="the configuration as JSON text")


def add_section_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """One option per key of a section (``--port``, ``--logLevel``, ...), typed like its default."""
    for key, default in DEFAULTS[section].items():
        if key == "log":
            for log_key, log_default in default.items():
                _add_option(parser, f"log{log_key[0].upper()}{log_key[1:]}", log_default,
                            f"{section}.log.{log_key}")
        else:
            _add_option(parser, key, default, f"{section}.{key}")


def _add_option(parser: argparse.ArgumentParser, option: str, default: Any, key: str) -> None:
    help_text = f"overrides {key} (default {json.dumps(default)})"
    if isinstance(default, list):
        parser.add_argument(f"--{option}", nargs="*", metavar="VALUE", help=help_text)
    elif isinstance(default, bool):
        parser.add_argument(f"--{option}", type=lambda text: text.lower() in ("1", "true", "yes"),
                            help=help_text)
    else:
        parser.add_argument(f"--{option}", type=type(default), help=help_text)


def section_overrides(args: argparse.Namespace, section: str) -> Config:
    """The section options given on the command line, shaped like the config file."""
    result: Config = {}
    for key, default in DEFAULTS[section].items():
        if key == "log":
            for log_key in default:
                value = getattr(args, f"log{log_key[0].upper()}{log_key[1:]}", None)
                if value is not None:
                    result.setdefault("log", {})[log_key] = value
        else:
            value = getattr(args, key, None)
            if value is not None:
                result[key] = value
    return {section: result} if result else {}


def config_from_args(args: argparse.Namespace, section: str | None = None) -> Config:
    """Defaults < file < command line, as the programs' ``-c``/``--configJSON`` and options say."""
    overrides = section_overrides(args, section) if section else None
    return load_config(path=args.config, json_text=args.configJSON, overrides=overrides)
