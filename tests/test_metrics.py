"""GET /metrics on both servers, in the Prometheus text format, counting real traffic."""

from __future__ import annotations

import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import SAMPLE_RESPONSE, sample_request


def scrape(trio, server: str) -> dict[tuple[str, tuple], float]:
    response = trio.session.get(trio.url(server, "/metrics"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_caches_downloads_and_processing(make_trio, symbol_store):
    symbol_store.reset()
    trio = make_trio([symbol_store.url("flaky/1")], {"DiskCache": {"retries": 2, "answerBeforeTable": False}})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # cold: 2 downloads, 2 processed
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # warm: the in-process cache
    trio.post({"debug": True, "action": "cacheEvict", "libName": "xul.pdb",
               "breakpadId": "44E4EC8C2F41492B9369D6B9A059577C2", "offset": 11723767})
    assert trio.post(sample_request()).text == SAMPLE_RESPONSE  # the evicted frame: a miss
    trio.session.post(trio.url("SymServer", "/no/such/path/123"), data=b"{}", timeout=10)
    trio.post(None, raw=b"{bad json")

    symserver = scrape(trio, "SymServer")
    assert symserver[("symserver_requests_total", (("method", "POST"), ("route", "/"), ("status", "200")))] == 4
    assert symserver[("symserver_requests_total", (("method", "POST"), ("route", "/"), ("status", "400")))] == 1
    assert symserver[("symserver_requests_total", (("method", "POST"), ("route", "other"), ("status", "404")))] == 1
    assert symserver[("symserver_recent_frames_hits_total", ())] == 2 + 1
    assert symserver[("symserver_recent_frames_entries", ())] == 2
    assert symserver[("symserver_memcached_hits_total", ())] == 0  # the evicted frame left memcached too
    assert symserver[("symserver_memcached_misses_total", ())] == 2 + 1
    assert symserver[("symserver_diskcache_requests_total", (("outcome", "ok"),))] == 2
    assert symserver[("symserver_request_seconds_count", (("route", "/"),))] == 5

    diskcache = scrape(trio, "DiskCache")
    assert diskcache[("diskcache_downloads_total", (("result", "found"),))] == 2
    assert diskcache[("diskcache_download_failures_total", (("reason", "http_status"),))] == 2  # one 503 each
    assert diskcache[("diskcache_download_bytes_total", ())] > 2000
    assert diskcache[("diskcache_processing_seconds_count", ())] == 2
    assert diskcache[("diskcache_table_requests_total", (("source", "loaded"),))] == 2
    assert diskcache[("diskcache_cache_files", ())] == 2
    assert diskcache[("diskcache_cache_bytes", ())] > 0
    assert diskcache[("diskcache_cache_max_bytes", ())] == 2048 * 1024 * 1024

    body = {"version": 4, "memoryMap": [["xul.pdb", "44E4EC8C2F41492B9369D6B9A059577C2"]], "stacks": [[[0, 1]]]}
    trio.post(body, server="DiskCache")
    # one for the evicted frame's lookup above, one for this request
    assert scrape(trio, "DiskCache")[("diskcache_table_requests_total", (("source", "cache"),))] == 2


def test_unavailable_diskcache_and_missing_modules_are_counted(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("plain")], memcached=False)
    missing = {"version": 4, "memoryMap": [["nothere.pdb", "0000000000000000000000000000000A"]], "stacks": [[[0, 1]]]}
    trio.post(missing)
    assert scrape(trio, "DiskCache")[("diskcache_downloads_total", (("result", "not_found"),))] == 1
    trio.kill("DiskCache", signal.SIGTERM)
    time.sleep(0.5)
    assert trio.post(sample_request()).status_code == 503
    samples = scrape(trio, "SymServer")
    assert samples[("symserver_diskcache_requests_total", (("outcome", "unavailable"),))] == 1
    assert samples[("symserver_requests_total", (("method", "POST"), ("route", "/"), ("status", "503")))] == 1
