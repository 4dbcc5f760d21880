"""s3:// against moto_server on 127.0.0.1 (docs/cloud-storage.md):

- the trainer reads TFRecords from one bucket and writes checkpoints, events and the export to
  another, then resumes from them; predict serves the export straight from the bucket;
- requests are SigV4-signed as S3 checks them (moto with IAM auth on), with credentials from the
  environment or the container endpoint (fetched again after ExpiredToken); wrong credentials fail
  with an error naming the bucket;
- faults (a proxy answering 500/503, dropping connections before, after and in the middle of an
  answer) mid-read and mid-upload are retried and the job completes; a store that keeps failing
  makes the job fail with a clear error and publishes nothing (no checkpoint, no state file, no
  pending multipart upload).
"""
import json
import os
import re

import boto3
import pytest

from cloud_servers import (TRAIN_FLAGS, CredentialStub, FaultProxy, binary, enforce_auth, run,
                           start_moto, write_idx)


def client(url, key="test", secret="test"):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret)


def keys(s3, bucket, prefix=""):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moto")
    server = start_moto(log=str(tmp / "moto.log"))
    s3 = client(server.url)
    for b in ("data", "jobs"):
        s3.create_bucket(Bucket=b)
    env = {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    # the data: 256 training and 64 test images of the shipped MNIST, uploaded by our writer
    for name, n in (("train", 256), ("test", 64)):
        img, lab = write_idx(str(tmp), n)
        run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             f"s3://data/mnist/{name}.tfrecords"], env, cwd=str(tmp))
    yield server, s3, env, str(tmp)
    server.stop()


def predict(export, tmp, env):
    inst = os.path.join(tmp, "instances.json")
    with open(inst, "w") as f:
        f.write(json.dumps({"image_input": [[[i % 255] for i in range(28)]] * 28}) + "\n")
    return json.loads(run([binary("predict"), "--model-dir", export, "--json-instances", inst],
                          env, cwd=tmp).stdout)


def test_trainer_round_trip_and_resume(moto):
    server, s3, env, tmp = moto
    data = ["--train", "s3://data/mnist/train.tfrecords", "--test", "s3://data/mnist/*.tfrecords"]
    first = run([binary("trainer"), *data, "--job-dir", "s3://jobs/job1", "--steps", "2",
                 *TRAIN_FLAGS], env, cwd=tmp)
    assert "Loaded 256 training and 320 evaluation examples" in first.stderr
    objs = keys(s3, "jobs", "job1/")
    for k in ("checkpoint", "model.ckpt-0.index", "model.ckpt-2.index",
              "model.ckpt-2.data-00000-of-00001"):
        assert "job1/" + k in objs, sorted(objs)
    events = [k for k in objs if re.fullmatch(r"job1/(eval/)?events\.out\.tfevents\.\d+\..+", k)]
    assert len(events) == 2, sorted(objs)
    for k in events:   # whole records only (re-uploaded at each flush, then at close)
        counted = run([binary("tfrecord"), "count", "s3://jobs/" + k], env, cwd=tmp).stdout
        assert int(counted.split()[0]) >= 2, counted
    exports = sorted({m.group(1) for k in objs
                      if (m := re.fullmatch(r"job1/export/exporter/(\d{10})/saved_model\.pb", k))})
    assert len(exports) == 1
    assert f"job1/export/exporter/{exports[0]}/variables/variables.index" in objs
    assert not [k for k in objs if "temp-" in k or ".tmp-" in k], "temporary names left behind"
    # the data file is 39 MB: a multipart upload (8 MiB parts) that completed whole
    assert objs["job1/model.ckpt-2.data-00000-of-00001"] > 16 << 20
    state = s3.get_object(Bucket="jobs", Key="job1/checkpoint")["Body"].read().decode()
    assert state.startswith('model_checkpoint_path: "model.ckpt-2"')
    # the same job into a local directory (whose files TF reads: test_trainer_e2e.py) leaves the
    # same bytes: the bucket holds exactly what a local disk would
    local_job = os.path.join(tmp, "local_job1")
    run([binary("trainer"), *data, "--job-dir", local_job, "--steps", "2", *TRAIN_FLAGS], env,
        cwd=tmp)
    for name in ("checkpoint", "model.ckpt-2.index", "model.ckpt-2.data-00000-of-00001",
                 "model.ckpt-2.meta"):
        with open(os.path.join(local_job, name), "rb") as f:
            assert s3.get_object(Bucket="jobs", Key="job1/" + name)["Body"].read() == f.read(), name

    # resume: more steps from the bucket's newest checkpoint
    second = run([binary("trainer"), *data, "--job-dir", "s3://jobs/job1", "--steps", "4",
                  *TRAIN_FLAGS], env, cwd=tmp)
    assert "Restoring parameters from s3://jobs/job1/model.ckpt-2" in second.stderr
    assert "loss = " in second.stderr and "step = 3" in second.stderr
    state = s3.get_object(Bucket="jobs", Key="job1/checkpoint")["Body"].read().decode()
    assert state.startswith('model_checkpoint_path: "model.ckpt-4"')
    assert 'all_model_checkpoint_paths: "model.ckpt-2"' in state

    # the export is served from the bucket, as from a local copy of it
    objs = keys(s3, "jobs", "job1/export/exporter/")
    newest = max(k.split("/")[3] for k in objs)
    remote = predict(f"s3://jobs/job1/export/exporter/{newest}", tmp, env)
    local = os.path.join(tmp, "export_copy")
    for k in objs:
        if f"/{newest}/" in k:
            path = os.path.join(local, k.split(f"/{newest}/")[1])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file("jobs", k, path)
    assert predict(local, tmp, env) == remote
    assert len(remote["predictions"][0]) == 10


def test_faults_mid_read_and_mid_upload_are_retried(moto):
    server, s3, env, tmp = moto
    proxy = FaultProxy(server.url)
    try:
        env = {**env, "AWS_ENDPOINT_URL": proxy.url}
        small_reads = {**env, "CNN_FS_READ_BYTES": "65536"}   # the data file in 4 ranged reads
        rules = [
            proxy.add("GET", r"^/data/mnist/train\.tfrecords$", "503", skip=1),   # ranged reads
            proxy.add("GET", r"^/data/mnist/train\.tfrecords$", "drop-mid", skip=2),
            proxy.add("GET", r"^/data/mnist/train\.tfrecords$", "drop", skip=3),
            proxy.add("GET", r"^/jobs\?", "500"),                                  # a listing
            proxy.add("PUT", r"partNumber=2&", "503"),                             # upload parts
            proxy.add("PUT", r"partNumber=3&", "drop-after"),
            proxy.add("PUT", r"partNumber=4&", "drop-mid"),
            proxy.add("POST", r"\?uploadId=", "500"),                              # completion
            proxy.add("PUT", r"/jobs/job2/checkpoint$", "drop"),                   # the state file
        ]
        p = run([binary("trainer"), "--train", "s3://data/mnist/train.tfrecords", "--test",
                 "s3://data/mnist/test.tfrecords", "--job-dir", "s3://jobs/job2", "--steps", "1",
                 *TRAIN_FLAGS], small_reads, cwd=tmp)
        assert all(r.fired == 1 for r in rules), [(r.path_re.pattern, r.fired) for r in rules]
        # 5xx and answers cut short are retried here (a connection that dies before any answer
        # on a reused connection may also be retried by libcurl itself, silently)
        assert p.stderr.count("retrying in") >= 5, p.stderr
        # the trainer logs them as its other lines (scrapers match WARNING:tensorflow:)
        assert all(line.startswith("WARNING:tensorflow:s3://") for line in p.stderr.splitlines()
                   if "retrying in" in line), p.stderr
        objs = keys(s3, "jobs", "job2/")
        state = s3.get_object(Bucket="jobs", Key="job2/checkpoint")["Body"].read().decode()
        assert state.startswith('model_checkpoint_path: "model.ckpt-1"')
        # what arrived is what was written: the checkpoint reads back and resumes (no steps left)
        assert objs["job2/model.ckpt-1.data-00000-of-00001"] == objs[
            "job2/model.ckpt-0.data-00000-of-00001"]
        again = run([binary("trainer"), "--train", "s3://data/mnist/train.tfrecords", "--test",
                     "s3://data/mnist/test.tfrecords", "--job-dir", "s3://jobs/job2", "--steps",
                     "1", *TRAIN_FLAGS], env, cwd=tmp)
        assert "Restoring parameters from s3://jobs/job2/model.ckpt-1" in again.stderr
        assert s3.list_multipart_uploads(Bucket="jobs").get("Uploads", []) == []
    finally:
        proxy.stop()


def test_directories_and_globs_over_several_listing_pages(moto):
    server, s3, env, tmp = moto
    img, lab = write_idx(tmp, 10)
    for i in range(5):
        run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             f"s3://data/pages/part-{i}.tfrecords"], env, cwd=tmp)
    body = s3.get_object(Bucket="data", Key="pages/part-0.tfrecords")["Body"].read()
    for k in ("pages/.hidden", "pages/sub/part-9.tfrecords", "pages/sub/deeper/x"):
        s3.put_object(Bucket="data", Key=k, Body=body)
    proxy = FaultProxy(server.url)   # records the requests
    try:
        paged = {**env, "AWS_ENDPOINT_URL": proxy.url, "CNN_FS_LIST_PAGE": "2"}
        for pattern in ("s3://data/pages/part-*.tfrecords", "s3://data/pages",
                        "s3://data/pages/", "s3://data/pages/part-[0-4].tfrecords"):
            out = run([binary("tfrecord"), "count", pattern], paged, cwd=tmp).stdout.splitlines()
            assert [line.split("\t")[1] for line in out[:-1]] == [
                f"s3://data/pages/part-{i}.tfrecords" for i in range(5)], out
            assert out[-1].split("\t")[0] == "50"
        # '*' does not cross '/': only the object directly under sub/
        out = run([binary("tfrecord"), "count", "s3://data/pages/*/part-*"], paged, cwd=tmp)
        assert out.stdout.splitlines()[0] == "10\ts3://data/pages/sub/part-9.tfrecords"
        assert any("continuation-token=" in p for _, p, _ in proxy.seen)   # pages were followed
    finally:
        proxy.stop()


def test_store_that_keeps_failing_publishes_nothing(moto):
    server, s3, env, tmp = moto
    proxy = FaultProxy(server.url)
    try:
        proxy.add("PUT", r"partNumber=", "500", times=-1)
        env = {**env, "AWS_ENDPOINT_URL": proxy.url, "CNN_FS_RETRIES": "2"}
        p = run([binary("trainer"), "--train", "s3://data/mnist/train.tfrecords", "--test",
                 "s3://data/mnist/test.tfrecords", "--job-dir", "s3://jobs/job3", "--steps", "1",
                 *TRAIN_FLAGS], env, expect=1, cwd=tmp)
        assert "s3://jobs/job3/model.ckpt-0.data-00000-of-00001" in p.stderr
        assert "HTTP 500" in p.stderr
        # nothing under the final names: no data file, no index, no state file naming them
        assert [k for k in keys(s3, "jobs", "job3/") if "ckpt" in k or "checkpoint" in k] == []
        assert s3.list_multipart_uploads(Bucket="jobs").get("Uploads", []) == []
    finally:
        proxy.stop()


def test_signed_requests_and_wrong_credentials(tmp_path):
    """moto with IAM auth checks every signature: our SigV4 passes it (PUT, multipart, HEAD,
    ranged GET), with keys from the environment or the container credentials endpoint."""
    server = start_moto(log=str(tmp_path / "moto-auth.log"), auth=True)
    stub = CredentialStub()
    try:
        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="y")
        iam.create_user(UserName="trainer")
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        iam.put_user_policy(UserName="trainer", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        client(server.url, key["AccessKeyId"], key["SecretAccessKey"]).create_bucket(
            Bucket="secure")
        enforce_auth(server.url)
        tmp = str(tmp_path)
        img, lab = write_idx(tmp, 6000, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
        base = {"AWS_ENDPOINT_URL": server.url, "AWS_REGION": "us-east-1"}
        good = {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "CNN_FS_PART_BYTES": "5242880"}
        run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
             "s3://secure/train.tfrecords"], good, cwd=tmp)   # 4.7 MB: one signed PUT
        assert run([binary("tfrecord"), "count", "s3://secure/train.tfrecords"], good,
                   cwd=tmp).stdout.split()[0] == "6000"

        # the container endpoint (ECS/SageMaker) gives the same key
        stub.aws_creds = {"AccessKeyId": key["AccessKeyId"],
                          "SecretAccessKey": key["SecretAccessKey"], "Token": "",
                          "Expiration": "2099-01-01T00:00:00Z"}
        stub.aws_auth = "secret-container-token"
        container = {**base, "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{stub.host}/aws-creds",
                     "AWS_CONTAINER_AUTHORIZATION_TOKEN": "secret-container-token"}
        assert run([binary("tfrecord"), "count", "s3://secure/train.tfrecords"], container,
                   cwd=tmp).stdout.split()[0] == "6000"
        assert stub.requests.count(("GET", "/aws-creds")) == 1
        # temporary credentials that expire early (ExpiredToken) are fetched again
        proxy = FaultProxy(server.url)
        try:
            proxy.add("GET", r"^/secure/train\.tfrecords$", "400", body=(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
                "<Message>The provided token has expired.</Message></Error>"))
            assert run([binary("tfrecord"), "count", "s3://secure/train.tfrecords"],
                       {**container, "AWS_ENDPOINT_URL": proxy.url},
                       cwd=tmp).stdout.split()[0] == "6000"
        finally:
            proxy.stop()
        assert stub.requests.count(("GET", "/aws-creds")) == 3

        # a wrong secret: a clear error naming the bucket and where the credentials came from
        bad = {**good, "AWS_SECRET_ACCESS_KEY": "wrong"}
        p = run([binary("tfrecord"), "from-idx", "--images", img, "--labels", lab, "--out",
                 "s3://secure/other.tfrecords"], bad, expect=1, cwd=tmp)
        assert "bucket 'secure'" in p.stderr and "SignatureDoesNotMatch" in p.stderr
        assert "AWS_ACCESS_KEY_ID" in p.stderr and "wrong" not in p.stderr
        p = run([binary("tfrecord"), "count", "s3://secure/train.tfrecords"], bad, expect=None,
                cwd=tmp)
        assert "bucket 'secure'" in p.stderr and "denied" in p.stderr
        assert "secure/other.tfrecords" not in keys(client(server.url, key["AccessKeyId"],
                                                           key["SecretAccessKey"]), "secure")
    finally:
        stub.stop()
        server.stop()
