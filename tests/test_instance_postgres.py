"""The `postgres` instance profile (dagster_home/postgres/dagster.yaml) against a real PostgreSQL server from Debian's
packages, started here on a free port of 127.0.0.1 in a temporary directory and stopped by PID."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from gene_assets.settings import PROJECT_ROOT

from .conftest import free_port, planted_inputs, stop_process_tree

PASSWORD = "gene-assets-test"


def postgres_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = shutil.which("initdb") or (found[-1] if found else None)
    assert initdb, "Debian's postgresql package is missing: `make test` installs it (apt-get install postgresql)."
    return Path(initdb).parent


def as_server_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` account the Debian package creates."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres_server():
    """A fresh cluster (user `dagster`, scram password) serving on 127.0.0.1; yields the DAGSTER_PG_* variables."""
    bin_dir = postgres_binaries()
    root = Path(tempfile.mkdtemp(prefix="gene-assets-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
    (root / "password").write_text(PASSWORD)
    data = root / "data"
    subprocess.run(
        as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "dagster",
                "--auth=scram-sha-256",
                f"--pwfile={root / 'password'}",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    log_path = root / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            as_server_user(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(root)]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(port),
        "DAGSTER_PG_DB": "gene_assets",
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": PASSWORD,
    }
    try:
        deadline = time.time() + 60
        while True:
            try:
                connection = psycopg2.connect(
                    host="127.0.0.1", port=port, user="dagster", password=PASSWORD, dbname="postgres"
                )
                break
            except psycopg2.OperationalError:
                assert time.time() < deadline and server.poll() is None, log_path.read_text()[-2000:]
                time.sleep(0.3)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE gene_assets")
        connection.close()
        yield env
    finally:
        stop_process_tree(server)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_instance_stores_runs_events_and_pools_for_every_process(postgres_server, tmp_path, monkeypatch):
    """A materialization through the postgres profile lands in the database; another instance (as another user's
    process would) reads the run, the materialization and the `gpu` pool limit from it."""
    from gene_assets.definitions import all_asset_checks, all_assets
    from gene_assets.embeddings.partitions import backbone_partitions, backbone_view_key
    from gene_assets.resources import local_resources
    from gene_assets.storage import ParquetIOManager

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "postgres" / "dagster.yaml", home)
    for name, value in {**postgres_server, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    planted_inputs(tmp_path / "storage")
    resources = {**local_resources(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "storage"))}
    key = backbone_view_key("bag-of-words", "summary")
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions(backbone_partitions.name, ["bag-of-words"])
        run = materialize(
            [*all_assets, *all_asset_checks],
            selection=["gene_embeddings"],
            instance=instance,
            resources=resources,
            partition_key=key,
        )
    assert run.success

    with DagsterInstance.get() as other:
        assert type(other.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert other.get_run_by_id(run.run_id).is_success
        assert other.get_dynamic_partitions(backbone_partitions.name) == ["bag-of-words"]
        [record] = other.fetch_materializations(AssetKey("gene_embeddings"), limit=5).records
        assert record.run_id == run.run_id and record.partition_key == key
        assert other.event_log_storage.get_pool_config().default_pool_limit == 1
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=int(postgres_server["DAGSTER_PG_PORT"]),
        user="dagster",
        password=PASSWORD,
        dbname="gene_assets",
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        assert cursor.fetchall() == [(run.run_id, "SUCCESS")]
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cursor.fetchone()[0] == 1
    connection.close()
