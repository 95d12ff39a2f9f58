"""`jasrbench download`: resumable, SHA-256-checked downloads and safe extraction.

Everything runs against an HTTP server on 127.0.0.1 started here, serving
archives built here from real faces (``../shared/datasets``) in the official
layouts; no test touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jasrbench.data import catalogue, download, downloader
from jasrbench.data import fetch as fetcher
from jasrbench.data.catalogue import RemoteFile, Source
from jasrbench.data.fetch import DOWNLOADS_DIR, MARKER, Options
from jasrbench.errors import DataError, JasrbenchError
from jasrbench.paths import REPO_ROOT

# ---------------------------------------------------------------------------
# A local HTTP server with switchable behaviour
# ---------------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "range"  # range | norange | html | fail
    drops: int = 0  # the next `drops` responses are cut after `drop_after` bytes
    drop_after: int = 0
    then: str = ""  # mode to switch to once the drops are used up
    requests: list[dict] = field(default_factory=list)

    def served(self, name: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == name]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        st: ServerState = self.server.state
        name = self.path.lstrip("/")
        record = {"path": name, "range": self.headers.get("Range"), "status": None, "sent": 0}
        st.requests.append(record)
        if name.startswith("moved/"):  # a redirect, as figshare's download links do
            record["status"] = 302
            self.send_response(302)
            self.send_header("Location", "/" + name[len("moved/"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = st.files.get(name)
        if st.mode == "fail":
            record["status"] = 503
            self.send_error(503, "Service Unavailable")
            return
        if body is None:
            record["status"] = 404
            self.send_error(404, "Not Found")
            return
        if st.mode == "html":
            page = b"<html><body><form>Please accept the terms of use</form></body></html>"
            record["status"] = 200
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and st.mode == "range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                record["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            record["status"] = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            record["status"] = 200
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if st.drops > 0:
            st.drops -= 1
            payload = payload[: st.drop_after]
            self.close_connection = True
            if st.drops == 0 and st.then:
                st.mode = st.then
        # Recorded before writing: the client can finish reading (and the test
        # assert) before this handler thread runs another line after the write.
        record["sent"] = len(payload)
        self.wfile.write(payload)
        self.wfile.flush()


@pytest.fixture(scope="module")
def _http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.state = ServerState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(_http_server):
    _http_server.state = ServerState()
    _http_server.state.url = f"http://127.0.0.1:{_http_server.server_address[1]}"
    return _http_server.state


OPTS = dict(timeout=5.0, retries=2, backoff=0.01, progress=False)


def opts(**kw) -> Options:
    return Options(**{**OPTS, **kw})


def quiet(_msg: str) -> None:
    pass


# ---------------------------------------------------------------------------
# Archives from real faces, in the official layouts
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def w300_files(w300_root) -> dict[str, bytes]:
    """Two real faces (image + .pts) per 300W subset, paths as in 300W's layout.

    ``afw/`` and ``ibug/`` are absent from the shared test data, so other real
    300W faces stand in for them: the layout is complete, the faces are real.
    """
    files: dict[str, bytes] = {}

    def take(src_subset: str, dst_subset: str, picks: slice) -> None:
        for pts in sorted((w300_root / src_subset).glob("*.pts"))[picks]:
            image = next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")
            files[f"{dst_subset}/{image.name}"] = image.read_bytes()
            files[f"{dst_subset}/{pts.name}"] = pts.read_bytes()

    for subset in ("lfpw/trainset", "lfpw/testset", "helen/trainset", "helen/testset"):
        take(subset, subset, slice(0, 2))
    take("helen/trainset", "afw", slice(2, 4))
    take("lfpw/trainset", "ibug", slice(2, 4))
    return files


@pytest.fixture(scope="module")
def lfw_files(verify_root) -> dict[str, bytes]:
    """Real photos in LFW's layout (from ``verify/``) plus a one-fold pairs.txt naming them."""
    people = sorted(p for p in verify_root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:2]
    a, b = people[0].name, people[1].name
    files = {}
    for person in (a, b):
        for i in (1, 2):
            files[f"{person}/{person}_{i:04d}.jpg"] = (verify_root / person / f"{person}_{i:04d}.jpg").read_bytes()
    pairs = f"1\t1\n{a}\t1\t2\n{a}\t1\t{b}\t2\n".encode()
    return {"images": files, "pairs": pairs, "names": (a, b)}


def tar_bytes(files: dict[str, bytes], top: str | None = None, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_for(server: ServerState, dataset: str, entries: list[tuple[str, bytes, dict]], *,
               publish_sha: bool = True) -> Source:
    """A catalogue entry for files served by the test server (with their real SHA-256)."""
    files = []
    for name, data, kw in entries:
        server.files[name] = data
        kw = {"sha256": sha(data) if publish_sha else None, **kw}
        files.append(RemoteFile(name=name, urls=(f"{server.url}/{name}",), **kw))
    return Source(dataset=dataset, name="test", description="test", page="https://example.invalid/terms",
                  terms="", files=tuple(files))


def dlib_style(server, w300_files, **kw) -> tuple[Source, bytes]:
    top = "ibug_300W_large_face_landmark_dataset"
    data = tar_bytes(w300_files, top=top)
    name = f"{top}.tar.gz"
    return source_for(server, "300w", [(name, data, {"unpack": "tar", "strip": top})], **kw), data


def only_downloads(to: Path) -> bool:
    return [p.name for p in to.iterdir()] == [DOWNLOADS_DIR]


def no_staging_left(to: Path) -> bool:
    return not any(p.name.startswith((".extract-", ".replaced-")) for p in (to / DOWNLOADS_DIR).iterdir())


# ---------------------------------------------------------------------------
# Good downloads
# ---------------------------------------------------------------------------


def test_tarball_download_extracts_official_300w_layout(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    lines = fetcher.fetch(source, to, opts(), echo=quiet)

    for rel, content in w300_files.items():
        assert (to / rel).read_bytes() == content, rel
    assert lines == [f"{s}: 2 annotated images" for s in catalogue.W300_SUBSETS]
    marker = json.loads((to / MARKER).read_text())
    assert marker["files"] == {source.files[0].name: sha(data)} and marker["verified"][source.files[0].name]
    assert (to / DOWNLOADS_DIR / source.files[0].name).read_bytes() == data
    assert not (to / DOWNLOADS_DIR / (source.files[0].name + ".part")).exists()
    assert no_staging_left(to)
    assert [r["status"] for r in server.requests] == [200]


def test_official_ibug_zips_each_land_in_their_subset_folder(server, w300_files, tmp_path):
    entries = []
    for subset in ("afw", "helen", "ibug", "lfpw"):
        members = {k[len(subset) + 1:]: v for k, v in w300_files.items() if k.startswith(subset + "/")}
        if subset == "helen":  # a top folder named like the subset is stripped too
            members = {f"helen/{k}": v for k, v in members.items()}
        entries.append((f"{subset}.zip", zip_bytes(members), {"unpack": "zip", "into": subset, "strip": subset}))
    source = source_for(server, "300w", entries)
    to = tmp_path / "300w"
    fetcher.fetch(source, to, opts(), echo=quiet)
    for rel, content in w300_files.items():
        assert (to / rel).read_bytes() == content, rel
    assert oct(stat.S_IMODE((to / "afw").stat().st_mode)) == oct(0o755)
    assert no_staging_left(to)


def test_lfw_layout_and_pairs_are_checked(server, lfw_files, tmp_path):
    archive = tar_bytes(lfw_files["images"], top="lfw")
    source = source_for(server, "lfw", [
        ("lfw.tgz", archive, {"unpack": "tar", "strip": "lfw"}),
        ("pairs.txt", lfw_files["pairs"], {"size": len(lfw_files["pairs"])}),
    ])
    to = tmp_path / "lfw"
    lines = fetcher.fetch(source, to, opts(), echo=quiet)
    a, b = lfw_files["names"]
    assert (to / a / f"{a}_0001.jpg").read_bytes() == lfw_files["images"][f"{a}/{a}_0001.jpg"]
    assert (to / "pairs.txt").read_bytes() == lfw_files["pairs"]
    assert lines == ["2 identities, 4 images", "pairs.txt: 2 pairs in 1 folds"]

    (to / b / f"{b}_0002.jpg").unlink()  # an image the protocol needs
    with pytest.raises(DataError, match=r"1 of 3 images named by pairs.txt are missing"):
        catalogue.check_lfw(to)


def test_300w_layout_check_names_missing_subsets(tmp_path):
    (tmp_path / "lfpw" / "trainset").mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing folder\(s\) lfpw/testset, helen/trainset, helen/testset, afw, ibug"):
        catalogue.check_300w(tmp_path)


# ---------------------------------------------------------------------------
# Resume, restart, interruption, no second download
# ---------------------------------------------------------------------------


def _partial(to: Path, name: str, data: bytes, n: int) -> None:
    (to / DOWNLOADS_DIR).mkdir(parents=True)
    (to / DOWNLOADS_DIR / f"{name}.part").write_bytes(data[:n])


def test_partial_file_is_resumed_with_a_range_request(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    to, half = tmp_path / "300w", len(data) // 2
    _partial(to, source.files[0].name, data, half)
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert server.requests == [{"path": source.files[0].name, "range": f"bytes={half}-", "status": 206,
                                "sent": len(data) - half}]
    assert (to / DOWNLOADS_DIR / source.files[0].name).read_bytes() == data


def test_partial_file_restarts_when_the_server_ignores_range(server, w300_files, tmp_path):
    server.mode = "norange"
    source, data = dlib_style(server, w300_files)
    to, half = tmp_path / "300w", len(data) // 2
    _partial(to, source.files[0].name, data, half)
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert [(r["range"], r["status"], r["sent"]) for r in server.requests] == [(f"bytes={half}-", 200, len(data))]
    assert (to / DOWNLOADS_DIR / source.files[0].name).read_bytes() == data  # not appended twice


def test_resume_survives_a_redirect(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    rf = source.files[0]
    moved = RemoteFile(**{**rf.__dict__, "urls": (f"{server.url}/moved/{rf.name}",)})
    to, third = tmp_path / "300w", len(data) // 3
    _partial(to, rf.name, data, third)
    fetcher.fetch(Source(**{**source.__dict__, "files": (moved,)}), to, opts(), echo=quiet)
    assert [(r["path"], r["range"], r["status"]) for r in server.requests] == [
        (f"moved/{rf.name}", f"bytes={third}-", 302), (rf.name, f"bytes={third}-", 206)]
    assert (to / DOWNLOADS_DIR / rf.name).read_bytes() == data


def test_complete_part_file_is_finished_without_a_transfer(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    _partial(to, source.files[0].name, data, len(data))  # killed just before the final rename
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert [(r["status"], r["sent"]) for r in server.requests] == [(416, 0)]
    assert (to / DOWNLOADS_DIR / source.files[0].name).read_bytes() == data


def test_dropped_connection_is_resumed_within_the_same_run(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    server.drops, server.drop_after = 2, len(data) // 3
    fetcher.fetch(source, tmp_path / "300w", opts(), echo=quiet)
    cut = len(data) // 3
    assert [(r["range"], r["status"]) for r in server.requests] == [
        (None, 200), (f"bytes={cut}-", 206), (f"bytes={2 * cut}-", 206)]


def test_interrupted_transfer_then_rerun_completes(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    name, to, cut = source.files[0].name, tmp_path / "300w", len(data) // 2
    # the connection drops mid-file, then the server goes down: the run gives up
    server.drops, server.drop_after, server.then = 1, cut, "fail"
    with pytest.raises(DataError, match=r"partial download is kept in .*\.part and a rerun resumes it"):
        fetcher.fetch(source, to, opts(retries=1), echo=quiet)
    assert [r["status"] for r in server.requests] == [200, 503, 503]
    assert (to / DOWNLOADS_DIR / f"{name}.part").read_bytes() == data[:cut]
    assert not (to / DOWNLOADS_DIR / name).exists() and not (to / MARKER).exists()
    assert only_downloads(to)

    server.mode, server.requests = "range", []
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert [(r["range"], r["status"], r["sent"]) for r in server.requests] == [(f"bytes={cut}-", 206, len(data) - cut)]
    assert (to / DOWNLOADS_DIR / name).read_bytes() == data
    assert (to / "ibug").is_dir()


def test_complete_verified_file_is_not_downloaded_again(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert len(server.requests) == 1

    messages: list[str] = []
    fetcher.fetch(source, to, opts(), echo=messages.append)  # completed folder: nothing to do
    assert len(server.requests) == 1 and "already downloaded and extracted" in messages[-1]

    (to / MARKER).unlink()  # extraction not recorded: the archive is reused, not fetched
    (to / "afw" / next(iter(p.name for p in (to / "afw").iterdir()))).unlink()
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert len(server.requests) == 1
    assert sorted(p.name for p in (to / "afw").iterdir()) == sorted(
        k.split("/")[1] for k in w300_files if k.startswith("afw/"))


def test_removed_archives_are_not_fetched_again(server, w300_files, tmp_path):
    source, _ = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    fetcher.fetch(source, to, opts(remove_archives=True), echo=quiet)
    assert sorted(p.name for p in (to / DOWNLOADS_DIR).iterdir()) == [".lock"]
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert len(server.requests) == 1 and (to / "helen" / "testset").is_dir()


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def test_sha256_mismatch_names_url_and_both_hashes(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    name = source.files[0].name
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0xFF
    server.files[name] = bytes(corrupted)
    to = tmp_path / "300w"
    with pytest.raises(DataError) as err:
        fetcher.fetch(source, to, opts(), echo=quiet)
    message = str(err.value)
    assert f"{server.url}/{name}" in message
    assert f"expected {sha(data)}" in message and f"got {sha(bytes(corrupted))}" in message
    downloads = to / DOWNLOADS_DIR
    assert not (downloads / name).exists() and not (downloads / f"{name}.part").exists()
    assert (downloads / f"{name}.sha256-mismatch").read_bytes() == bytes(corrupted)
    assert only_downloads(to)

    server.files[name] = data  # the next run downloads afresh and succeeds
    fetcher.fetch(source, to, opts(), echo=quiet)
    assert (downloads / name).read_bytes() == data


def test_existing_file_with_wrong_hash_is_moved_aside(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    (to / DOWNLOADS_DIR).mkdir(parents=True)
    (to / DOWNLOADS_DIR / source.files[0].name).write_bytes(data[:-10])
    with pytest.raises(DataError, match=f"expected {sha(data)}"):
        fetcher.fetch(source, to, opts(), echo=quiet)
    assert server.requests == [] and not (to / DOWNLOADS_DIR / source.files[0].name).exists()


def test_unpublished_checksum_is_printed_stored_and_needs_acceptance(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files, publish_sha=False)
    name, to = source.files[0].name, tmp_path / "300w"
    messages: list[str] = []
    with pytest.raises(JasrbenchError, match=r"--accept-unverified") as err:
        fetcher.fetch(source, to, opts(), echo=messages.append)
    assert sha(data) in str(err.value) and any(sha(data) in m for m in messages)
    sidecar = to / DOWNLOADS_DIR / f"{name}.sha256"
    assert sidecar.read_text() == f"{sha(data)}  {name}\n"
    assert (to / DOWNLOADS_DIR / name).read_bytes() == data and only_downloads(to)

    fetcher.fetch(source, to, opts(accept_unverified=True), echo=quiet)
    assert len(server.requests) == 1  # the kept file was checked against its sidecar, not refetched
    assert json.loads((to / MARKER).read_text())["verified"] == {name: False}

    (to / MARKER).unlink()
    (to / DOWNLOADS_DIR / name).write_bytes(data[:-1] + b"x")  # changed since its first download
    with pytest.raises(DataError, match=f"has {sha(data)}"):
        fetcher.fetch(source, to, opts(accept_unverified=True), echo=quiet)


# ---------------------------------------------------------------------------
# Hostile and broken archives
# ---------------------------------------------------------------------------


def _nothing_escaped(tmp_path: Path, to: Path, absolute: Path) -> None:
    assert not list(tmp_path.rglob("evil*")), list(tmp_path.rglob("evil*"))
    assert not absolute.exists()
    assert only_downloads(to) and no_staging_left(to) and not (to / MARKER).exists()


def _tar_member(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o644
    tf.addfile(info, io.BytesIO(data) if data else None)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink_etc", "symlink_up", "hardlink", "device"])
def test_malicious_tar_is_refused(server, w300_files, tmp_path, case):
    absolute = tmp_path / "abs_evil_target"
    members = {
        "dotdot": dict(name="lfpw/../../evil", data=b"x", why="'..' component"),
        "absolute": dict(name=str(absolute), data=b"x", why="absolute path"),
        "symlink_etc": dict(name="evil_link", kind=tarfile.SYMTYPE, link="/etc/passwd", why="symbolic link to '/etc/passwd'"),
        "symlink_up": dict(name="lfpw/evil_up", kind=tarfile.SYMTYPE, link="..", why="symbolic link to '..'"),
        "hardlink": dict(name="evil_hard", kind=tarfile.LNKTYPE, link="/etc/passwd", why="hard link"),
        "device": dict(name="evil_dev", kind=tarfile.CHRTYPE, why="device or special file"),
    }[case]
    why = members.pop("why")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        first = next(iter(w300_files))  # a real face first: partial extraction must not leak out
        _tar_member(tf, first, data=w300_files[first])
        _tar_member(tf, **members)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        assert tf.getnames()[-1] == members["name"]  # the hostile name really is in the archive
    source = source_for(server, "300w", [("hostile.tar.gz", buf.getvalue(), {"unpack": "tar"})])
    to = tmp_path / "dest"
    with pytest.raises(DataError, match=re.escape(why)) as err:
        fetcher.fetch(source, to, opts(), echo=quiet)
    assert "hostile.tar.gz" in str(err.value) and "refused member" in str(err.value)
    _nothing_escaped(tmp_path, to, absolute)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink"])
def test_malicious_zip_is_refused(server, w300_files, tmp_path, case):
    absolute = tmp_path / "abs_evil_target"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        first = next(iter(w300_files))
        zf.writestr(first, w300_files[first])
        if case == "dotdot":
            zf.writestr("../evil", b"x")
        elif case == "absolute":
            zf.writestr(zipfile.ZipInfo(str(absolute)), b"x")
        else:
            info = zipfile.ZipInfo("evil_link")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        assert zf.namelist()[-1] == {"dotdot": "../evil", "absolute": str(absolute), "symlink": "evil_link"}[case]
    why = {"dotdot": "'..' component", "absolute": "absolute path", "symlink": "symbolic link"}[case]
    source = source_for(server, "300w", [("hostile.zip", buf.getvalue(), {"unpack": "zip", "into": "afw"})])
    to = tmp_path / "dest"
    with pytest.raises(DataError, match=re.escape(why)) as err:
        fetcher.fetch(source, to, opts(), echo=quiet)
    assert "hostile.zip" in str(err.value)
    _nothing_escaped(tmp_path, to, absolute)


@pytest.mark.parametrize("kind", ["truncated_tgz", "garbage_tgz", "truncated_zip", "bad_crc_zip"])
def test_corrupt_archive_gives_a_clear_error(server, w300_files, tmp_path, kind):
    if kind.endswith("tgz"):
        good = tar_bytes(w300_files)
        data = good[: len(good) // 2] if kind == "truncated_tgz" else b"this is not a gzip file" * 100
        name, unpack = "broken.tar.gz", "tar"
    else:
        good = zip_bytes(w300_files)
        if kind == "truncated_zip":
            data = good[: len(good) // 2]
        else:  # flip a byte inside the first member's compressed data
            data = bytearray(good)
            data[200] ^= 0xFF
            data = bytes(data)
        name, unpack = "broken.zip", "zip"
    # the archive's own (published) hash matches: the corruption is in the archive itself
    source = source_for(server, "300w", [(name, data, {"unpack": unpack, "into": "" if unpack == "tar" else "afw"})])
    to = tmp_path / "dest"
    with pytest.raises(DataError, match=r"corrupt or truncated archive") as err:
        fetcher.fetch(source, to, opts(), echo=quiet)
    assert str(err.value).startswith(str(to / DOWNLOADS_DIR / name))
    assert only_downloads(to) and no_staging_left(to)


def test_html_form_instead_of_the_file_explains_the_manual_way(server, w300_files, tmp_path):
    source, _ = dlib_style(server, w300_files, publish_sha=False)
    server.mode = "html"
    to = tmp_path / "300w"
    with pytest.raises(DataError, match=r"HTML page") as err:
        fetcher.fetch(source, to, opts(), echo=quiet)
    assert "https://example.invalid/terms" in str(err.value)
    assert str(to / DOWNLOADS_DIR / source.files[0].name) in str(err.value)
    assert not (to / DOWNLOADS_DIR / (source.files[0].name + ".part")).exists()


def test_next_url_is_tried_when_the_first_is_gone(server, w300_files, tmp_path):
    source, data = dlib_style(server, w300_files)
    rf = source.files[0]
    gone = RemoteFile(**{**rf.__dict__, "urls": (f"{server.url}/missing/{rf.name}", *rf.urls)})
    fetcher.fetch(Source(**{**source.__dict__, "files": (gone,)}), tmp_path / "300w", opts(), echo=quiet)
    assert [r["status"] for r in server.requests] == [404, 200]


# ---------------------------------------------------------------------------
# Catalogue and command line
# ---------------------------------------------------------------------------


def test_local_mirror_through_a_file_url(w300_files, tmp_path):
    top = "ibug_300W_large_face_landmark_dataset"
    data = tar_bytes(w300_files, top=top)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{top}.tar.gz").write_bytes(data)
    fetcher.fetch(catalogue.get_source("300w", "dlib"), tmp_path / "300w",
             opts(url_base=mirror.as_uri(), accept_unverified=True), echo=quiet)
    assert (tmp_path / "300w" / "lfpw" / "testset").is_dir()
    assert (tmp_path / "300w" / DOWNLOADS_DIR / f"{top}.tar.gz.sha256").read_text().startswith(sha(data))


def test_catalogue_checksums_are_published_ones_or_none():
    lfw = catalogue.get_source("lfw")
    assert {rf.name: rf.sha256 for rf in lfw.files} == {
        "lfw.tgz": "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
        "pairs.txt": "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
    }
    for src in catalogue.CATALOGUE["300w"].values():
        assert all(rf.sha256 is None and "no SHA-256 is published" in rf.checksum_source for rf in src.files)
    assert [rf.name for rf in catalogue.get_source("300w").files] == ["afw.zip", "helen.zip", "ibug.zip", "lfpw.zip"]
    mirror = catalogue.file_urls(catalogue.get_source("300w", "dlib").files[0], "http://mirror.example/data/")
    assert mirror == ("http://mirror.example/data/ibug_300W_large_face_landmark_dataset.tar.gz",)
    with pytest.raises(JasrbenchError, match="licence"):
        catalogue.get_source("aflw")
    with pytest.raises(JasrbenchError, match="no source 'nope'"):
        catalogue.get_source("300w", "nope")


def test_catalogue_pairs_checksum_matches_the_shared_official_pairs_file(lfw_pairs_file):
    published = {rf.name: rf for rf in catalogue.get_source("lfw").files}["pairs.txt"]
    assert sha(lfw_pairs_file.read_bytes()) == published.sha256
    assert lfw_pairs_file.stat().st_size == published.size


def test_command_line_downloads_from_a_mirror(server, w300_files, tmp_path):
    top = "ibug_300W_large_face_landmark_dataset"
    data = tar_bytes(w300_files, top=top)
    server.files[f"{top}.tar.gz"] = data
    to = tmp_path / "raw" / "300w"
    env = {**os.environ, download.MIRROR_ENV: server.url, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "jasrbench.cli", "download", "300w", "--source", "dlib", "--to", str(to),
           "--retries", "1", "--timeout", "5"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert sha(data) in refused.stdout and "--accept-unverified" in refused.stderr

    done = subprocess.run([*cmd, "--accept-unverified"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"next: jasrbench prepare 300w --raw {to} --out datasets/prepared/300w" in done.stdout
    assert "ibug: 2 annotated images" in done.stdout
    assert len(server.requests) == 1  # the second run reused the kept, hash-recorded file
    assert (to / "lfpw" / "trainset").is_dir()


def test_command_line_says_how_to_get_manual_datasets(capsys):
    from jasrbench.cli import main

    assert main(["download", "helen"]) == 1
    assert "ifp.illinois.edu" in capsys.readouterr().err
    assert main(["download", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "ndownloader.figshare.com/files/5976018" in listing and "none published" in listing


# ---------------------------------------------------------------------------
# pooch, the lock, one list of 300W subsets
# ---------------------------------------------------------------------------


def test_resuming_downloader_resumes_under_pooch_retrieve(server, w300_files, tmp_path):
    import pooch

    source, data = dlib_style(server, w300_files)
    rf = source.files[0]
    half = len(data) // 2
    part = tmp_path / f"{rf.name}.part"
    part.write_bytes(data[:half])
    settings = dict(timeout=5.0, retries=2, backoff=0.01, progress=False)
    resuming = downloader.ResumingDownloader(part, rf, **settings)
    got = pooch.retrieve(rf.urls[0], known_hash=sha(data), fname=rf.name, path=tmp_path, downloader=resuming)
    assert Path(got).read_bytes() == data
    assert [(r["range"], r["status"], r["sent"]) for r in server.requests] == [
        (f"bytes={half}-", 206, len(data) - half)]
    # pooch's own temporary file is gone; `part` is the verified file's other name until fetch removes it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([rf.name, part.name])

    part.write_bytes(data[:half])  # a partial file whose server copy changed: pooch refuses it
    server.files[rf.name] = data[:half] + bytes(len(data) - half)
    other = tmp_path / "again"
    with pytest.raises(ValueError, match=f"expected {sha(data)}"):
        pooch.retrieve(rf.urls[0], known_hash=sha(data), fname=rf.name, path=other,
                       downloader=downloader.ResumingDownloader(part, rf, **settings))
    assert part.read_bytes() == server.files[rf.name] and [p.name for p in other.iterdir()] == []


def test_a_second_download_into_the_same_folder_is_refused(server, w300_files, tmp_path):
    import fcntl

    source, _ = dlib_style(server, w300_files)
    to = tmp_path / "300w"
    (to / DOWNLOADS_DIR).mkdir(parents=True)
    with open(to / DOWNLOADS_DIR / ".lock", "w") as held:  # another process's lock (flock is per open file)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JasrbenchError, match=re.escape(f"another `jasrbench download` is writing into {to}")):
            fetcher.fetch(source, to, opts(), echo=quiet)
        assert server.requests == []
    fetcher.fetch(source, to, opts(), echo=quiet)  # released: the next run proceeds
    assert (to / "ibug").is_dir()


def test_300w_subsets_have_one_source_of_truth():
    from jasrbench.data import w300

    assert sorted(catalogue.W300_SUBSETS) == sorted(w300.SUBSETS)
    assert [rf.into for rf in catalogue.get_source("300w", "ibug").files] == sorted(
        {s.split("/")[0] for s in w300.SUBSETS})
