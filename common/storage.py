"""Run directories on object storage: `--runs_dir s3://bucket/prefix` (or any fsspec URL).

Lightning itself reads and writes checkpoints through fsspec
(https://lightning.ai/docs/pytorch/stable/common/remote_fs.html), so the run's checkpoints
(`last.ckpt`, numbered, SLURM's `hpc_ckpt_N.ckpt`) go straight to the URL. What this module adds:

- `write_bytes_atomically`: `last.ckpt` is never half-written. On an object store (S3, GCS, Azure)
  an object becomes visible only when its upload completes (one PUT, or a multipart upload's final
  "complete" call), so a kill mid-upload leaves the previous object; on any other fsspec filesystem
  the bytes go to a temporary name first and are moved over the target.
- `check_writable`: before training, a probe object is written and deleted, so an unreachable
  endpoint, missing credentials, a missing bucket or a bucket without write permission is one clear
  message, not a traceback after the first checkpoint interval.
- `local_cache`: TensorBoard's writer appends to a local file; for a remote run it writes to a local
  cache directory that `common.callbacks.remote_run_sync.RemoteRunSync` uploads (event files,
  config.yaml, memory.json, reports, the export bundle).

The endpoint and credentials come from the storage library's usual places: for S3, s3fs/botocore read
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `~/.aws/credentials` or an instance role, and
`AWS_ENDPOINT_URL` for an S3-compatible server (MinIO, Ceph, R2...).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from common.run_directory import filesystem, is_url, join

OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
LOCAL_CACHE_ROOT = Path(".cache/mtl/remote-runs")
S3_PART_BYTES = 8 * 2**20


class StorageError(UserInputError):
    """A runs_dir URL that cannot be used; the message names the URL and what went wrong."""


def protocol_of(url: str) -> str:
    return str(url).split("://", 1)[0].lower() if is_url(url) else "file"


def write_bytes_atomically(data: bytes, url: str) -> None:
    """Store `data` at `url` so that a reader sees either the previous object or all of the new one."""
    fs, path = filesystem(url)
    if protocol_of(url) in ("s3", "s3a"):
        # One PUT, or above 2 parts a multipart upload in 8 MiB parts (the AWS CLI's default part size).
        fs.pipe_file(path, data, chunksize=S3_PART_BYTES)
        return
    if protocol_of(url) in OBJECT_STORE_PROTOCOLS:
        fs.pipe_file(path, data)  # the store's own atomic put
        return
    parent, _, name = path.rpartition("/")
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    fs.makedirs(parent, exist_ok=True)
    try:
        fs.pipe_file(temporary, data)
        fs.mv(temporary, path)
    except BaseException:
        if fs.exists(temporary):
            fs.rm(temporary)
        raise


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


def local_cache(url: str, root: Path = LOCAL_CACHE_ROOT) -> Path:
    """The local directory that stands in for the remote directory `url` where a local file is needed."""
    scheme, _, rest = str(url).partition("://")
    return root / scheme / rest.strip("/")


def check_writable(url: str) -> None:
    """Write and delete a probe object under the URL `url`; raise `StorageError` saying what is wrong.

    (A local runs_dir needs no probe: it is created when the run starts, and an error there names
    the path.)
    """
    probe = join(url, f".mtl-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        fs, path = filesystem_for_probe(probe)
        fs.pipe_file(path, b"")
        fs.rm(path)
    except ImportError as error:
        raise StorageError(
            f"--runs_dir {url}: no fsspec filesystem for {protocol_of(url)}:// is installed ({error}); "
            "for s3:// install s3fs, for gs:// gcsfs, for az:// adlfs"
        ) from error
    except Exception as error:
        raise StorageError(f"--runs_dir {url}: {_explain(error)}") from error


def filesystem_for_probe(url: str) -> tuple[Any, str]:
    """The filesystem for the probe: for S3, one attempt with a short connect timeout, so an
    unreachable endpoint is reported in seconds instead of after botocore's retries."""
    from fsspec.core import url_to_fs

    if protocol_of(url) in ("s3", "s3a"):
        return url_to_fs(
            url,
            skip_instance_cache=True,
            config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 5, "read_timeout": 10},
        )
    return url_to_fs(url)


def _explain(error: BaseException) -> str:
    """One line for the usual ways a storage URL fails, from the exception's class names."""
    names = {cls.__name__ for cls in type(error).__mro__}
    detail = f"({type(error).__name__}: {error})"
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return (
            "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile in "
            f"~/.aws/credentials, or an instance role) {detail}"
        )
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionError", "ClientConnectorError"}:
        return (
            f"the storage endpoint cannot be reached (check the URL, AWS_ENDPOINT_URL, the network) {detail}"
        )
    if isinstance(error, PermissionError):
        return f"no permission to write there (the credentials may read but not write this bucket) {detail}"
    if isinstance(error, FileNotFoundError):
        return f"the bucket does not exist (create it first) {detail}"
    return f"cannot write a test object there {detail}"


def abort_incomplete_uploads(url: str) -> list[str]:
    """Abort the multipart uploads a killed writer left under `url` (S3 only); return their keys.

    They are invisible to readers but the store keeps (and bills) their parts until aborted; this is
    the bucket's counterpart of the local `.last.ckpt.*.tmp` files.
    """
    if protocol_of(url) not in ("s3", "s3a"):
        return []
    fs, path = filesystem(url)
    bucket, _, prefix = path.partition("/")
    prefix = prefix.rstrip("/") + "/"
    listed = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix).get("Uploads", [])
    for upload in listed:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return [upload["Key"] for upload in listed]
