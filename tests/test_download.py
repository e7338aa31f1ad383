"""The paper's MatConvNet weights, downloaded on first use from a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cqdkit.errors import CqdkitError, DataError
from cqdkit.models import load_weights
from cqdkit.models import download as download_module
from cqdkit.models.download import URL_ENV
from cqdkit.models.pretrained import locate_pretrained, store_path
from cqdkit.files import OWNED_LIST

from .test_matconvnet import (AVERAGE, TINY_VGGM, TinyVggm, assert_matches_reference, random_weights, save_network,
                              tiny, vggm_layers)


class Server:
    """A local HTTP server of one file, ``/imagenet-vgg-m.mat``: it honours Range requests unless told not to,
    and closes the connection after ``cuts[i]`` bytes of the body of request ``i`` when given."""

    def __init__(self) -> None:
        self.payload = b""
        self.honour_range = True
        self.cuts: list[int] = []
        self.ranges: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.ranges.append(self.headers.get("Range"))
                if self.path != "/imagenet-vgg-m.mat":
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range") and server.honour_range:
                    start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-"))
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cuts.pop(0) if server.cuts else len(body)
                self.wfile.write(body[:cut])
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"


@pytest.fixture
def server(monkeypatch, tmp_path) -> Iterator[Server]:
    served = Server()
    thread = threading.Thread(target=served.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(URL_ENV, served.url)
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture
def tiny_vggm(server, tmp_path, monkeypatch, register_plugin) -> list[dict]:
    """``tiny-vggm`` (vggm, narrow) downloads imagenet-vgg-m.mat, which the server holds: a generated network of
    its widths. Returns the network's layers."""
    register_plugin(TinyVggm(), name="tiny-vggm")
    monkeypatch.setitem(download_module.FILES, "tiny-vggm", "imagenet-vgg-m.mat")
    layers = vggm_layers(random_weights(7))
    server.payload = save_network(tmp_path / "served.mat", layers, "simplenn", AVERAGE.reshape(1, 1, 3)).read_bytes()
    return layers


def store_files() -> list[str]:
    folder = store_path("vggm").parent
    return sorted(p.name for p in folder.iterdir() if p.name not in (".cqdkit.lock", OWNED_LIST)) if folder.exists() else []


def test_first_use_downloads_converts_and_records_the_sha256_and_the_second_use_does_not(server, tiny_vggm, caplog):
    with caplog.at_level("INFO", logger="cqdkit"):
        source = locate_pretrained("tiny-vggm")
    digest = hashlib.sha256(server.payload).hexdigest()
    assert server.ranges == [None]
    assert source["matconvnet"] == {"source": server.url + "imagenet-vgg-m.mat", "sha256": digest}
    assert source["path"] == str(store_path("tiny-vggm")) and source["source"] == "file"
    assert store_files() == ["tiny-vggm-matconvnet.json", "tiny-vggm-matconvnet.safetensors"]  # the .mat deleted
    assert json.loads(store_path("tiny-vggm").with_suffix(".json").read_text())["sha256"] == digest
    assert [r.getMessage() for r in caplog.records] == [
        f"downloaded {server.url}imagenet-vgg-m.mat (sha256 {digest}) and converted it for tiny-vggm into "
        f"{store_path('tiny-vggm')}"]
    model = tiny("vggm", TINY_VGGM)
    load_weights(model, source["path"], strict=True)
    assert_matches_reference(model, tiny_vggm, AVERAGE)
    assert locate_pretrained("tiny-vggm") == source
    assert server.ranges == [None]  # not downloaded again


def test_a_download_broken_off_half_way_resumes_with_a_range_request(server, tiny_vggm):
    half = len(server.payload) // 2
    server.cuts = [half]
    source = locate_pretrained("tiny-vggm")
    assert server.ranges == [None, f"bytes={half}-"]
    assert source["matconvnet"]["sha256"] == hashlib.sha256(server.payload).hexdigest()


def test_a_partial_download_left_by_an_earlier_run_is_resumed(server, tiny_vggm):
    store = store_path("tiny-vggm").parent
    store.mkdir(parents=True)
    (store / "imagenet-vgg-m.mat.part").write_bytes(server.payload[:1000])
    source = locate_pretrained("tiny-vggm")
    assert server.ranges == ["bytes=1000-"]
    assert source["matconvnet"]["sha256"] == hashlib.sha256(server.payload).hexdigest()


def test_a_partial_download_that_is_a_link_is_never_written_through(server, tiny_vggm, tmp_path):
    store = store_path("tiny-vggm").parent
    store.mkdir(parents=True)
    outside = tmp_path / "users-file"
    outside.write_bytes(b"precious")
    (store / "imagenet-vgg-m.mat.part").symlink_to(outside)
    with pytest.raises(OSError):
        locate_pretrained("tiny-vggm")
    assert outside.read_bytes() == b"precious"


def test_a_server_that_ignores_range_sends_the_whole_file_again(server, tiny_vggm):
    store = store_path("tiny-vggm").parent
    store.mkdir(parents=True)
    (store / "imagenet-vgg-m.mat.part").write_bytes(b"stale bytes of another file")
    server.honour_range = False
    source = locate_pretrained("tiny-vggm")
    assert server.ranges == ["bytes=27-"]
    assert source["matconvnet"]["sha256"] == hashlib.sha256(server.payload).hexdigest()


def test_a_download_that_keeps_breaking_off_is_kept_for_the_next_run(server, tiny_vggm):
    server.cuts = [1000, 1000, 1000]
    with pytest.raises(CqdkitError, match=r"^downloading .*imagenet-vgg-m\.mat: the connection broke off 3 times, "
                                          r"at 3000 of \d+ bytes; run again to resume .*imagenet-vgg-m\.mat\.part$"):
        locate_pretrained("tiny-vggm")
    assert store_files() == ["imagenet-vgg-m.mat.part"]
    source = locate_pretrained("tiny-vggm")
    assert server.ranges[-1] == "bytes=3000-"
    assert source["matconvnet"]["sha256"] == hashlib.sha256(server.payload).hexdigest()


def test_a_file_that_is_not_a_matconvnet_network_is_one_line_and_leaves_nothing(server):
    server.payload = b"<!DOCTYPE html><html><body>Moved: see the new models page</body></html>\n" * 10
    with pytest.raises(DataError) as error:
        locate_pretrained("vggm")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"downloaded {server.url}imagenet-vgg-m.mat, but it is not the MatConvNet vggm network: "
                              "MatConvNet file ")
    assert "is not a readable MATLAB .mat file" in message
    assert store_files() == []


def test_a_server_error_is_one_line(server, monkeypatch):
    monkeypatch.setitem(download_module.FILES, "vggm", "missing.mat")
    with pytest.raises(CqdkitError, match=r"^downloading http://127\.0\.0\.1:\d+/missing\.mat: the server answered "
                                          r"404 Not Found; expected the file$"):
        locate_pretrained("vggm")


def test_offline_keeps_the_one_line_message_and_says_the_download_failed(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CqdkitError) as error:
        locate_pretrained("vggm")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"no pretrained vggm weights: {store_path('vggm')} does not exist and downloading it "
                              f"failed: cannot reach http://127.0.0.1:{port}/imagenet-vgg-m.mat (")
    assert "convert it once with `cqdkit convert-weights imagenet-vgg-m.mat --arch vggm`" in message
    assert "--no-pretrained" in message
    assert store_files() == []


def test_the_default_location_is_matconvnets_models_page(monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    assert download_module.matconvnet_url("imagenet-vgg-m.mat") == \
        "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-m.mat"
    assert download_module.FILES == {"vggm": "imagenet-vgg-m.mat", "vgg16": "imagenet-vgg-verydeep-16.mat"}
