"""gs:// against gcp-storage-emulator on 127.0.0.1 via STORAGE_EMULATOR_HOST (docs/cloud-storage.md):

- the trainer reads TFRecords from one bucket and writes checkpoints, events and the export to
  another, then resumes from them, with a token from a metadata-server stub (GCE_METADATA_HOST) on
  every request; predict serves the export straight from the bucket;
- a service-account key file (GOOGLE_APPLICATION_CREDENTIALS) gives an RS256 JWT that the token
  stub verifies with the public key; a token refused with 401 is replaced once; a key the token
  endpoint rejects fails with an error naming the bucket;
- resumable uploads survive a 503 and a connection dropped after the chunk arrived (the session
  is asked how much it holds), reads survive 503s and connections dropped mid-answer; a store that
  keeps failing makes the write fail with a clear error and publishes nothing.
A proxy between the programs and the emulator records the requests and injects the faults.
"""
import json
import os
import re

import pytest

from cloud_servers import (TRAIN_FLAGS, CredentialStub, FaultProxy, binary, gcs_create_bucket,
                           gcs_get, gcs_list, gcs_put, make_service_account, run, start_gcs,
                           write_idx)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gcs")
    server = start_gcs(log=str(tmp / "gcs.log"))
    for b in ("data", "jobs"):
        gcs_create_bucket(server.url, b)
    proxy = FaultProxy(server.url)
    stub = CredentialStub()
    env = {"STORAGE_EMULATOR_HOST": proxy.url, "GCE_METADATA_HOST": stub.host}
    for name, n in (("train", 256), ("test", 64)):
        img, lab = write_idx(str(tmp), n)
        run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             f"gs://data/mnist/{name}.tfrecords"], env, cwd=str(tmp))
    # what a Spark or Beam job leaves beside its output: Hadoop's hidden names, skipped
    gcs_put(server.url, "data", "mnist/_SUCCESS", b"not a record")
    gcs_put(server.url, "data", "mnist/.part-0.crc", b"not a record either")
    yield server, proxy, stub, env, str(tmp)
    proxy.stop()
    stub.stop()
    server.stop()


def test_trainer_round_trip_and_resume(gcs):
    server, proxy, stub, env, tmp = gcs
    proxy.reset()
    # as AI Platform passes them: --train-file gs://..., --job-dir gs://...
    data = ["--train-file", "gs://data/mnist/train.tfrecords", "--eval-file", "gs://data/mnist"]
    first = run([binary("trainer"), *data, "--job-dir", "gs://jobs/job1", "--steps", "2",
                 *TRAIN_FLAGS], env, cwd=tmp)
    assert "Loaded 256 training and 320 evaluation examples" in first.stderr
    # every request carried the metadata server's token
    assert proxy.seen and all(a == "Bearer md-token-1" for _, _, a in proxy.seen), \
        {a for _, _, a in proxy.seen}
    objs = gcs_list(server.url, "jobs", "job1/")
    for k in ("checkpoint", "model.ckpt-0.index", "model.ckpt-2.index",
              "model.ckpt-2.data-00000-of-00001"):
        assert "job1/" + k in objs, sorted(objs)
    assert any(re.fullmatch(r"job1/events\.out\.tfevents\.\d+\..+", k) for k in objs)
    assert any(re.fullmatch(r"job1/eval/events\.out\.tfevents\.\d+\..+", k) for k in objs)
    assert not [k for k in objs if "temp-" in k or ".tmp-" in k], "temporary names left behind"
    # 39 MB: a resumable upload in 8 MiB chunks
    assert objs["job1/model.ckpt-2.data-00000-of-00001"] > 16 << 20
    assert any("uploadType=resumable" in p for _, p, _ in proxy.seen)

    second = run([binary("trainer"), *data, "--job-dir", "gs://jobs/job1", "--steps", "3",
                  *TRAIN_FLAGS], env, cwd=tmp)
    assert "Restoring parameters from gs://jobs/job1/model.ckpt-2" in second.stderr
    state = gcs_get(server.url, "jobs", "job1/checkpoint").decode()
    assert state.startswith('model_checkpoint_path: "model.ckpt-3"')

    objs = gcs_list(server.url, "jobs", "job1/export/exporter/")
    versions = sorted({k.split("/")[3] for k in objs})
    assert len(versions) == 2 and all(re.fullmatch(r"\d{10}", v) for v in versions)
    for v in versions:   # each export complete: the marker and what it refers to
        assert {f"job1/export/exporter/{v}/{f}" for f in (
            "saved_model.pb", "variables/variables.index",
            "variables/variables.data-00000-of-00001")} <= set(objs)
    inst = os.path.join(tmp, "instances.json")
    with open(inst, "w") as f:
        f.write(json.dumps({"image_input": [[[(i * 3) % 255] for i in range(28)]] * 28}) + "\n")
    out = json.loads(run([binary("predict"), "--model-dir",
                          f"gs://jobs/job1/export/exporter/{versions[-1]}", "--json-instances",
                          inst], env, cwd=tmp).stdout)
    assert len(out["predictions"][0]) == 10


def test_service_account_key_file(gcs):
    server, proxy, stub, env, tmp = gcs
    proxy.reset()
    key_file = os.path.join(tmp, "sa.json")
    stub.public_key_pem = make_service_account(key_file, f"http://{stub.host}/token")
    sa_env = {"STORAGE_EMULATOR_HOST": proxy.url, "GOOGLE_APPLICATION_CREDENTIALS": key_file}
    p = run([binary("tfrecord"), "count", "gs://data/mnist/train.tfrecords"], sa_env, cwd=tmp)
    assert p.stdout.split()[0] == "256"
    assert all(a == "Bearer sa-token-1" for _, _, a in proxy.seen)
    claims = stub.jwt_claims[-1]
    assert claims["iss"] == "trainer@test.iam.gserviceaccount.com"
    assert claims["aud"] == f"http://{stub.host}/token"
    assert claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_write"
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    # a token refused (401: revoked or expired early) is replaced once, then the request repeated
    before = len(stub.jwt_claims)
    proxy.add("GET", r"/o/mnist%2Ftrain\.tfrecords\?alt=media", "401")
    p = run([binary("tfrecord"), "count", "gs://data/mnist/train.tfrecords"], sa_env, cwd=tmp)
    assert p.stdout.split()[0] == "256" and len(stub.jwt_claims) == before + 2

    # a key the token endpoint does not accept: the error names the bucket and the refusal
    other = os.path.join(tmp, "other.json")
    make_service_account(other, f"http://{stub.host}/token")
    bad_env = {**sa_env, "GOOGLE_APPLICATION_CREDENTIALS": other}
    p = run([binary("tfrecord"), "count", "gs://data/mnist/train.tfrecords"], bad_env,
            expect=None, cwd=tmp)
    assert "gs://data/" in p.stderr and "invalid_grant" in p.stderr and other in p.stderr
    assert "PRIVATE KEY" not in p.stderr


def test_faults_in_resumable_uploads_and_reads(gcs):
    server, proxy, stub, env, tmp = gcs
    proxy.reset()
    img, lab = write_idx(tmp, 20000, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    local = os.path.join(tmp, "local.tfrecords")
    run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out", local], env,
        cwd=tmp)
    # a 503, then twice a request that took effect but whose answer was lost: each time the
    # session is asked how much it holds and the upload goes on from there
    rules = [
        proxy.add("PUT", r"upload_id=", "503"),
        proxy.add("PUT", r"upload_id=", "drop-after"),
        proxy.add("PUT", r"upload_id=", "drop-after", skip=2),
    ]
    p = run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             "gs://data/big.tfrecords"], env, cwd=tmp)
    assert [r.fired for r in rules] == [1, 1, 1], p.stderr
    assert "querying the session" in p.stderr
    assert gcs_get(server.url, "data", "big.tfrecords") == open(local, "rb").read()

    proxy.reset()
    rules = [proxy.add("GET", r"/o/big\.tfrecords\?alt=media", "503", skip=1),
             proxy.add("GET", r"/o/big\.tfrecords\?alt=media", "drop-mid", skip=1),
             proxy.add("GET", r"/o/big\.tfrecords\?alt=media", "429", skip=1)]
    p = run([binary("tfrecord"), "count", "gs://data/big.tfrecords"],
            {**env, "CNN_FS_READ_BYTES": "1048576"}, cwd=tmp)
    assert p.stdout.split()[0] == "20000"
    assert [r.fired for r in rules] == [1, 1, 1] and p.stderr.count("retrying in") == 3


def test_store_that_keeps_failing_publishes_nothing(gcs):
    server, proxy, stub, env, tmp = gcs
    proxy.reset()
    img, lab = write_idx(tmp, 20000, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    proxy.add("PUT", r"upload_id=", "503", skip=1, times=-1)   # the second chunk, for ever
    p = run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             "gs://data/never.tfrecords"], {**env, "CNN_FS_RETRIES": "2"}, expect=1, cwd=tmp)
    assert "gs://data/never.tfrecords" in p.stderr and "503" in p.stderr
    assert "never.tfrecords" not in gcs_list(server.url, "data")


def test_vertex_ai_output_dirs_on_a_bucket(gcs):
    """Vertex AI's variables as its training service sets them (gs://, a trailing '/', no
    --job-dir): checkpoints under AIP_CHECKPOINT_DIR, the event files also under
    AIP_TENSORBOARD_LOG_DIR, the SavedModel at AIP_MODEL_DIR itself, replaced whole by a rerun
    and served from there by `predict`."""
    server, proxy, stub, env, tmp = gcs
    proxy.reset()
    vertex = {**env, "AIP_MODEL_DIR": "gs://jobs/vertex/model/",
              "AIP_CHECKPOINT_DIR": "gs://jobs/vertex/checkpoints/",
              "AIP_TENSORBOARD_LOG_DIR": "gs://jobs/vertex/logs/"}
    data = ["--train-file", "gs://data/mnist/train.tfrecords", "--eval-file", "gs://data/mnist"]
    for steps in ("2", "3"):
        p = run([binary("trainer"), *data, "--steps", steps, *TRAIN_FLAGS], vertex, cwd=tmp)
        assert "SavedModel written to: gs://jobs/vertex/model/saved_model.pb" in p.stderr
    objs = gcs_list(server.url, "jobs", "vertex/")
    assert "vertex/checkpoints/model.ckpt-3.index" in objs, sorted(objs)
    model = sorted(k for k in objs if k.startswith("vertex/model/"))
    assert model == ["vertex/model/assets.extra/example_instances.json",
                     "vertex/model/assets.extra/signature.json", "vertex/model/saved_model.pb",
                     "vertex/model/variables/variables.data-00000-of-00001",
                     "vertex/model/variables/variables.index"], model
    for sub in ("", "eval/"):
        ours = sorted(k.split("/")[-1] for k in objs
                      if re.fullmatch(rf"vertex/checkpoints/{sub}events\.out\.tfevents\..+", k))
        mirrored = sorted(k.split("/")[-1] for k in objs
                          if re.fullmatch(rf"vertex/logs/{sub}events\.out\.tfevents\..+", k))
        assert len(ours) == 2 and ours == mirrored, (ours, mirrored)
        for name in ours:
            assert (gcs_get(server.url, "jobs", f"vertex/checkpoints/{sub}{name}") ==
                    gcs_get(server.url, "jobs", f"vertex/logs/{sub}{name}"))
    assert not [k for k in objs if "temp-" in k or ".tmp-" in k], "temporary names left behind"
    inst = os.path.join(tmp, "instances.json")
    with open(inst, "w") as f:
        f.write(json.dumps({"image_input": [[[(i * 5) % 255] for i in range(28)]] * 28}) + "\n")
    out = json.loads(run([binary("predict"), "--model-dir", "gs://jobs/vertex/model/",
                          "--json-instances", inst], env, cwd=tmp).stdout)
    assert len(out["predictions"][0]) == 10
