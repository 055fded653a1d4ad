#!/usr/bin/env bash
# Local tollmon stack without Docker: a single-node Kafka (KRaft, combined
# broker+controller), Prometheus and Alertmanager, run as plain processes.
#
#   tools/stack.sh up             start whatever is not running (idempotent)
#   tools/stack.sh down [--purge] stop everything; --purge also deletes .run/
#   tools/stack.sh status         show what runs where (exit 3 if not all up)
#
# Environment:
#   TOLLMON_KAFKA_PORT               Kafka PLAINTEXT listener      (9092)
#   TOLLMON_KAFKA_CONTROLLER_PORT    KRaft controller listener     (9094)
#   TOLLMON_KAFKA_PARTITIONS         num.partitions for auto-created topics (4)
#   TOLLMON_PROMETHEUS_PORT          Prometheus web/API            (9090)
#   TOLLMON_ALERTMANAGER_PORT        Alertmanager web/API          (9093)
#   TOLLMON_WORKER_PORTS             worker /metrics ports Prometheus scrapes (6066,6067)
#   TOLLMON_WEBHOOK_PORT             where Alertmanager's receivers post (5001)
#   TOLLMON_AUTO_INSTALL             0 = never apt-get install missing tools (1)
#   TOLLMON_STARTUP_TIMEOUT          seconds to wait for each service (90)
#   TOLLMON_STOP_TIMEOUT             seconds between SIGTERM and SIGKILL (30)
#
# Everything lives under the repo: jars in .cache/kafka/libs, runtime data,
# logs and pid files in .run/ (both git-ignored).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

KAFKA_PORT=${TOLLMON_KAFKA_PORT:-9092}
CONTROLLER_PORT=${TOLLMON_KAFKA_CONTROLLER_PORT:-9094}
PARTITIONS=${TOLLMON_KAFKA_PARTITIONS:-4}
PROM_PORT=${TOLLMON_PROMETHEUS_PORT:-9090}
AM_PORT=${TOLLMON_ALERTMANAGER_PORT:-9093}
WORKER_PORTS=${TOLLMON_WORKER_PORTS:-6066,6067}
WEBHOOK_PORT=${TOLLMON_WEBHOOK_PORT:-5001}
AUTO_INSTALL=${TOLLMON_AUTO_INSTALL:-1}
STARTUP_TIMEOUT=${TOLLMON_STARTUP_TIMEOUT:-90}
STOP_TIMEOUT=${TOLLMON_STOP_TIMEOUT:-30}

LIBS=.cache/kafka/libs
POM=tools/kafka/pom.xml
RUN=.run
KAFKA_DIR=$RUN/kafka
PROM_DIR=$RUN/prometheus
AM_DIR=$RUN/alertmanager
ETC_DIR=$RUN/etc
PROM_CONFIG=config/prometheus.yml
AM_CONFIG=config/alertmanager.yml
TOPICS_FILE=config/topics.txt

SERVICES=(kafka prometheus alertmanager)

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

for p in "$KAFKA_PORT" "$CONTROLLER_PORT" "$PROM_PORT" "$AM_PORT" "$WEBHOOK_PORT" "$PARTITIONS"; do
    [[ $p =~ ^[0-9]+$ ]] || die "ports and partition counts must be numbers (got '$p')"
done
[[ $WORKER_PORTS =~ ^[0-9]+(,[0-9]+)*$ ]] \
    || die "TOLLMON_WORKER_PORTS must be ports separated by commas (got '$WORKER_PORTS')"
(( PARTITIONS >= 1 )) || die "TOLLMON_KAFKA_PARTITIONS must be at least 1"
[[ $CONTROLLER_PORT != "$KAFKA_PORT" && $AM_PORT != "$CONTROLLER_PORT" && $AM_PORT != "$KAFKA_PORT" \
   && $PROM_PORT != "$AM_PORT" && $PROM_PORT != "$KAFKA_PORT" && $PROM_PORT != "$CONTROLLER_PORT" ]] \
    || die "the Kafka, controller, Prometheus and Alertmanager ports must all differ"

# ---------------------------------------------------------------- processes

pid_file() { echo "$RUN/$1.pid"; }

# What the command line of each service contains (guards against pid reuse).
marker() {
    case $1 in
        kafka) echo "kafka.Kafka" ;;
        prometheus) echo "prometheus" ;;
        alertmanager) echo "alertmanager" ;;
    esac
}

# Prints the pid of a running service, or fails.
running_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(marker "$1")" || return 1
    echo "$pid"
}

service_log() {
    case $1 in
        kafka) echo "$KAFKA_DIR/broker.log" ;;
        prometheus) echo "$RUN/prometheus.log" ;;
        alertmanager) echo "$RUN/alertmanager.log" ;;
    esac
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

http_ok() { # url
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -m 3 -o /dev/null "$1" 2>/dev/null
    else
        local rest=${1#http://} hostport path
        hostport=${rest%%/*}; path=/${rest#*/}
        (
            exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || exit 1
            printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
            head -n1 <&3 | grep -q ' 200'
        ) 2>/dev/null
    fi
}

show_log_tail() { # service [extra log]
    local f
    for f in "$(service_log "$1")" "${2:-}"; do
        [[ -n $f && -s $f ]] || continue
        printf '[stack] ---- last lines of %s ----\n' "$f" >&2
        tail -n 40 "$f" >&2
        printf '[stack] ----\n' >&2
    done
}

# Start a command detached from this shell (own session, immune to SIGHUP).
spawn() { # service logfile cmd...
    local svc=$1 out=$2
    shift 2
    nohup setsid "$@" >>"$out" 2>&1 </dev/null &
    echo $! >"$(pid_file "$svc")"
}

stop_service() { # service -> 0 if it was running
    local pid
    pid=$(running_pid "$1") || { rm -f "$(pid_file "$1")"; return 1; }
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
}

wait_stopped() { # service pid
    local svc=$1 pid=$2 waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= STOP_TIMEOUT * 5 )); then
            warn "$svc (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    rm -f "$(pid_file "$svc")"
}

# ------------------------------------------------------------ prerequisites

APT_UPDATED=0
can_install() { [[ $AUTO_INSTALL != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
    if (( APT_UPDATED == 0 )); then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

java_major() {
    local v
    v=$(java -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)
    v=${v#1.}
    echo "${v%%[.+-]*}"
}

ensure_java() {
    local major=""
    command -v java >/dev/null 2>&1 && major=$(java_major)
    if [[ -z $major || $major -lt 17 ]]; then
        local what="Java 17 or newer is required (found: ${major:-none})"
        if can_install; then
            log "$what; installing openjdk-17-jre-headless"
            apt_install openjdk-17-jre-headless
            major=$(java_major)
            [[ -n $major && $major -ge 17 ]] || die "java on PATH is still older than 17 after installing openjdk-17-jre-headless; fix PATH or update-alternatives --config java"
        else
            die "$what. Install it, e.g. 'apt-get install openjdk-17-jre-headless' (Debian/Ubuntu), or run this as root with TOLLMON_AUTO_INSTALL=1."
        fi
    fi
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1
}

ensure_kafka_jars() {
    local ver
    ver=$(kafka_version)
    [[ -n $ver ]] || die "cannot read kafka.version from $POM"
    if [[ -f $LIBS/kafka_2.13-$ver.jar && -f $LIBS/kafka-tools-$ver.jar && -f $LIBS/kafka-clients-$ver.jar ]] \
        && compgen -G "$LIBS/log4j-core-*.jar" >/dev/null; then
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1; then
        if can_install; then
            apt_install maven
        else
            die "Kafka $ver jars are not in $LIBS and Maven is missing. Install it ('apt-get install maven') or run this as root with TOLLMON_AUTO_INSTALL=1."
        fi
    fi
    log "fetching Kafka $ver jars into $LIBS (mvn, once)"
    rm -rf "$LIBS"
    mkdir -p "$LIBS"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$ROOT/$LIBS" \
        >"$RUN/mvn.log" 2>&1 \
        || { tail -n 30 "$RUN/mvn.log" >&2; die "mvn could not fetch the Kafka jars (network? ~/.m2/settings.xml?); full output in $RUN/mvn.log"; }
    [[ -f $LIBS/kafka_2.13-$ver.jar ]] || die "mvn ran but $LIBS/kafka_2.13-$ver.jar is missing"
}

ensure_binary() { # binary package
    command -v "$1" >/dev/null 2>&1 && return 0
    if can_install; then
        apt_install "$2"
        command -v "$1" >/dev/null 2>&1 || die "installed $2 but '$1' is still not on PATH"
    else
        die "'$1' is missing. Install it with 'apt-get install $2' or run this as root with TOLLMON_AUTO_INSTALL=1."
    fi
}

# ------------------------------------------------------------------- kafka

KAFKA_CP="$LIBS/*"
JAVA_TOOL_OPTS=(-Xmx256m -Xms32m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
                -Dlog4j2.configurationFile="$ROOT/$KAFKA_DIR/tools-log4j2.properties")

write_kafka_config() {
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by tools/stack.sh on every 'up'; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$ROOT/$KAFKA_DIR/data
metadata.log.dir=$ROOT/$KAFKA_DIR/data
num.partitions=$PARTITIONS
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=134217728
num.network.threads=2
num.io.threads=4
EOF
    cat >"$KAFKA_DIR/log4j2.properties" <<EOF
# Generated by tools/stack.sh: broker logs go to broker.log (rotated).
status = warn
name = tollmon-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $ROOT/$KAFKA_DIR/broker.log
appender.file.filePattern = $ROOT/$KAFKA_DIR/broker.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
    cat >"$KAFKA_DIR/tools-log4j2.properties" <<'EOF'
# Generated by tools/stack.sh: command-line tools only print warnings.
status = warn
name = tollmon-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

# Same form as 'kafka-storage random-uuid' (16 random bytes, URL-safe base64
# without padding, not starting with '-'), without starting a JVM.
random_cluster_id() {
    local id
    for _ in 1 2 3 4 5 6 7 8; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id == -* || ${#id} != 22 ]] || { echo "$id"; return 0; }
    done
}

format_kafka_storage() {
    [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
    local id
    if [[ -s $KAFKA_DIR/cluster.id ]]; then
        id=$(<"$KAFKA_DIR/cluster.id")
    else
        id=$(random_cluster_id)
        [[ ${#id} == 22 ]] || id=$(java "${JAVA_TOOL_OPTS[@]}" -cp "$KAFKA_CP" kafka.tools.StorageTool random-uuid | tail -n1)
        [[ -n $id ]] || die "kafka StorageTool random-uuid printed nothing"
        echo "$id" >"$KAFKA_DIR/cluster.id"
    fi
    log "formatting Kafka storage (cluster id $id)"
    java "${JAVA_TOOL_OPTS[@]}" -cp "$KAFKA_CP" kafka.tools.StorageTool format \
        -t "$id" -c "$KAFKA_DIR/server.properties" --ignore-formatted >>"$KAFKA_DIR/format.log" 2>&1 \
        || { tail -n 20 "$KAFKA_DIR/format.log" >&2; die "formatting Kafka storage failed"; }
}

kafka_topics() { # args...
    java "${JAVA_TOOL_OPTS[@]}" -cp "$KAFKA_CP" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

start_kafka() {
    if running_pid kafka >/dev/null; then
        log "kafka already running (pid $(running_pid kafka))"
        return 0
    fi
    port_busy "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (not ours); stop it or set TOLLMON_KAFKA_PORT"
    port_busy "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is taken by another process (not ours); stop it or set TOLLMON_KAFKA_CONTROLLER_PORT"
    write_kafka_config
    format_kafka_storage
    log "starting kafka on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$CONTROLLER_PORT)"
    spawn kafka "$KAFKA_DIR/stdout.log" java -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dkafka.logs.dir="$ROOT/$KAFKA_DIR" \
        -Dlog4j2.configurationFile="$ROOT/$KAFKA_DIR/log4j2.properties" \
        -cp "$KAFKA_CP" kafka.Kafka "$KAFKA_DIR/server.properties"
    STARTED+=(kafka)
}

# Topics wanted on 'up': "name partitions" pairs from config/topics.txt.
wanted_topics() {
    [[ -f $TOPICS_FILE ]] || return 0
    local name parts rest
    while read -r name parts rest; do
        [[ -z $name || $name == \#* ]] && continue
        echo "$name ${parts:-$PARTITIONS}"
    done <"$TOPICS_FILE"
}

# One JVM that waits for a metadata answer and creates the missing topics; run
# from source by the java launcher (needs the jdk.compiler module, which
# Debian's JRE has). Much faster than one TopicCommand JVM per topic.
write_topic_setup() {
    cat >"$KAFKA_DIR/TopicSetup.java" <<'EOF'
// Generated by tools/stack.sh: args = bootstrap timeoutSeconds [topic partitions]...
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.errors.TopicExistsException;

public class TopicSetup {
    public static void main(String[] args) throws Exception {
        long deadline = System.currentTimeMillis() + Long.parseLong(args[1]) * 1000L;
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("request.timeout.ms", "5000");
        props.put("default.api.timeout.ms", "10000");
        try (Admin admin = Admin.create(props)) {
            Set<String> have = null;
            while (have == null) {
                try {
                    have = admin.listTopics().names().get();
                } catch (ExecutionException e) {
                    if (System.currentTimeMillis() > deadline) throw e;
                    Thread.sleep(300);
                }
            }
            List<NewTopic> missing = new ArrayList<>();
            for (int i = 2; i + 1 < args.length; i += 2)
                if (!have.contains(args[i]))
                    missing.add(new NewTopic(args[i], Integer.parseInt(args[i + 1]), (short) 1));
            int failed = 0;
            for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<Void>> e : admin.createTopics(missing).values().entrySet()) {
                try {
                    e.getValue().get();
                    System.out.println(e.getKey());
                } catch (ExecutionException ex) {
                    if (ex.getCause() instanceof TopicExistsException) continue;
                    System.err.println("cannot create " + e.getKey() + ": " + ex.getCause());
                    failed++;
                }
            }
            System.exit(failed == 0 ? 0 : 2);
        }
    }
}
EOF
}

wait_kafka() {
    local deadline=$((SECONDS + STARTUP_TIMEOUT)) rc=0 created
    local -a topics
    read -r -a topics <<<"$(wanted_topics | tr '\n' ' ')"
    # A successful metadata request is the health check (the port opens before
    # the broker has caught up with its metadata log). TopicSetup retries it
    # until the deadline, so it is launched at once: its compilation overlaps
    # the broker's startup. It then creates the missing topics.
    if java --list-modules 2>/dev/null | grep -q '^jdk\.compiler@'; then
        write_topic_setup
        timeout "$((STARTUP_TIMEOUT + 15))" java "${JAVA_TOOL_OPTS[@]}" -cp "$KAFKA_CP" "$KAFKA_DIR/TopicSetup.java" \
            "127.0.0.1:$KAFKA_PORT" "$STARTUP_TIMEOUT" "${topics[@]}" >"$KAFKA_DIR/topics.out" 2>"$KAFKA_DIR/tools.err" &
        local tpid=$!
        while kill -0 "$tpid" 2>/dev/null; do
            if ! running_pid kafka >/dev/null; then
                kill "$tpid" 2>/dev/null || true
                show_log_tail kafka "$KAFKA_DIR/stdout.log"
                die "kafka exited during startup"
            fi
            sleep 0.2
        done
        wait "$tpid" || rc=$?
        if (( rc == 2 )); then
            tail -n 20 "$KAFKA_DIR/tools.err" >&2
            warn "some topics could not be created (auto-create will still make them on first use)"
        elif (( rc != 0 )); then
            show_log_tail kafka "$KAFKA_DIR/tools.err"
            die "kafka did not answer metadata requests on 127.0.0.1:$KAFKA_PORT within ${STARTUP_TIMEOUT}s"
        fi
        created=$(<"$KAFKA_DIR/topics.out")
        [[ -z $created ]] || log "created topics: ${created//$'\n'/ }"
        return 0
    fi
    until port_busy "$KAFKA_PORT"; do
        if ! running_pid kafka >/dev/null; then
            show_log_tail kafka "$KAFKA_DIR/stdout.log"
            die "kafka exited during startup"
        fi
        if (( SECONDS >= deadline )); then
            show_log_tail kafka "$KAFKA_DIR/stdout.log"
            die "kafka did not open port $KAFKA_PORT within ${STARTUP_TIMEOUT}s"
        fi
        sleep 0.3
    done
    local left=$((deadline - SECONDS))
    (( left < 15 )) && left=15
    # Fallback without a compiler in the JRE: TopicCommand, one JVM per call.
    local list
    if ! list=$(timeout "$left" java "${JAVA_TOOL_OPTS[@]}" -cp "$KAFKA_CP" \
            org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list 2>"$KAFKA_DIR/tools.err"); then
        show_log_tail kafka "$KAFKA_DIR/tools.err"
        die "kafka does not answer metadata requests on 127.0.0.1:$KAFKA_PORT"
    fi
    local i pids=() missing=() failed=0 p
    for ((i = 0; i + 1 < ${#topics[@]}; i += 2)); do
        grep -qxF -- "${topics[i]}" <<<"$list" && continue
        missing+=("${topics[i]}")
        kafka_topics --create --if-not-exists --topic "${topics[i]}" --partitions "${topics[i + 1]}" \
            --replication-factor 1 >/dev/null 2>>"$KAFKA_DIR/tools.err" &
        pids+=($!)
    done
    (( ${#missing[@]} )) || return 0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    if (( failed )); then
        tail -n 20 "$KAFKA_DIR/tools.err" >&2
        warn "some topics could not be created (auto-create will still make them on first use)"
    else
        log "created topics: ${missing[*]}"
    fi
}

# ------------------------------------------------------ prometheus & alertmanager

# The configs are written for the default ports; other ports get substituted
# copies under .run/etc (Prometheus's rule_files then point back to config/rules).
prometheus_config() {
    if [[ $PROM_PORT == 9090 && $AM_PORT == 9093 && $WORKER_PORTS == 6066,6067 ]]; then
        echo "$PROM_CONFIG"
        return
    fi
    local targets
    targets=$(sed -e 's/[0-9][0-9]*/"127.0.0.1:&"/g' -e 's/,/, /g' <<<"$WORKER_PORTS")
    mkdir -p "$ETC_DIR"
    sed -e "s/127\.0\.0\.1:9090/127.0.0.1:$PROM_PORT/g" \
        -e "s/127\.0\.0\.1:9093/127.0.0.1:$AM_PORT/g" \
        -e "s/\"127\.0\.0\.1:6066\", \"127\.0\.0\.1:6067\"/$targets/" \
        -e "s#^\(  - \)rules/#\1$ROOT/config/rules/#" \
        "$PROM_CONFIG" >"$ETC_DIR/prometheus.yml"
    echo "$ETC_DIR/prometheus.yml"
}

alertmanager_config() {
    if [[ $WEBHOOK_PORT == 5001 ]]; then
        echo "$AM_CONFIG"
        return
    fi
    mkdir -p "$ETC_DIR"
    sed -e "s/127\.0\.0\.1:5001/127.0.0.1:$WEBHOOK_PORT/g" "$AM_CONFIG" >"$ETC_DIR/alertmanager.yml"
    echo "$ETC_DIR/alertmanager.yml"
}

start_prometheus() {
    if running_pid prometheus >/dev/null; then
        log "prometheus already running (pid $(running_pid prometheus))"
        return 0
    fi
    port_busy "$PROM_PORT" && die "port $PROM_PORT is taken by another process (not ours); stop it or set TOLLMON_PROMETHEUS_PORT"
    local cfg
    cfg=$(prometheus_config)
    mkdir -p "$PROM_DIR"
    log "starting prometheus on 127.0.0.1:$PROM_PORT"
    spawn prometheus "$RUN/prometheus.log" prometheus \
        --config.file="$cfg" \
        --storage.tsdb.path="$PROM_DIR" \
        --web.listen-address="127.0.0.1:$PROM_PORT" \
        --web.enable-lifecycle
    STARTED+=(prometheus)
}

start_alertmanager() {
    if running_pid alertmanager >/dev/null; then
        log "alertmanager already running (pid $(running_pid alertmanager))"
        return 0
    fi
    port_busy "$AM_PORT" && die "port $AM_PORT is taken by another process (not ours); stop it or set TOLLMON_ALERTMANAGER_PORT"
    local cfg
    cfg=$(alertmanager_config)
    mkdir -p "$AM_DIR"
    log "starting alertmanager on 127.0.0.1:$AM_PORT"
    # An empty --cluster.listen-address turns gossip clustering off (it would
    # otherwise listen on 9094, the KRaft controller port).
    spawn alertmanager "$RUN/alertmanager.log" prometheus-alertmanager \
        --config.file="$cfg" \
        --storage.path="$AM_DIR" \
        --web.listen-address="127.0.0.1:$AM_PORT" \
        --web.external-url="http://127.0.0.1:$AM_PORT/" \
        --cluster.listen-address=
    STARTED+=(alertmanager)
}

wait_http() { # service url
    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    until http_ok "$2"; do
        if ! running_pid "$1" >/dev/null; then
            show_log_tail "$1"
            die "$1 exited during startup"
        fi
        if (( SECONDS >= deadline )); then
            show_log_tail "$1"
            die "$1 was not ready at $2 within ${STARTUP_TIMEOUT}s"
        fi
        sleep 0.3
    done
}

# ---------------------------------------------------------------- commands

print_where() {
    cat <<EOF
[stack] ------------------------------------------------------------
[stack] kafka         bootstrap 127.0.0.1:$KAFKA_PORT (localhost:$KAFKA_PORT), controller 127.0.0.1:$CONTROLLER_PORT
[stack]               log $KAFKA_DIR/broker.log, data $KAFKA_DIR/data
[stack] prometheus    http://127.0.0.1:$PROM_PORT/   (targets: /targets, alerts: /alerts)
[stack]               log $RUN/prometheus.log; reload: curl -X POST http://127.0.0.1:$PROM_PORT/-/reload
[stack] alertmanager  http://127.0.0.1:$AM_PORT/   (webhook receiver expected at http://127.0.0.1:$WEBHOOK_PORT/)
[stack]               log $RUN/alertmanager.log
[stack] ------------------------------------------------------------
EOF
}

cmd_up() {
    local t0=$SECONDS
    STARTED=()
    mkdir -p "$RUN"
    ensure_java
    ensure_kafka_jars
    ensure_binary prometheus prometheus
    ensure_binary prometheus-alertmanager prometheus-alertmanager
    if command -v promtool >/dev/null 2>&1; then
        promtool check config "$PROM_CONFIG" >/dev/null 2>"$RUN/promtool.err" \
            || { cat "$RUN/promtool.err" >&2; die "$PROM_CONFIG is invalid (promtool check config)"; }
    fi
    if command -v amtool >/dev/null 2>&1; then
        amtool check-config "$AM_CONFIG" >/dev/null 2>"$RUN/amtool.err" \
            || { cat "$RUN/amtool.err" >&2; die "$AM_CONFIG is invalid (amtool check-config)"; }
    fi

    # Start all three, then wait; the Go services come up while Kafka formats
    # its storage and starts its JVM.
    start_alertmanager
    start_prometheus
    start_kafka

    # A broker that was already running and has its topics only gets a port
    # check, so that a repeated 'up' stays quick.
    if [[ " ${STARTED[*]} " == *" kafka "* || ! $KAFKA_DIR/topics.done -nt $TOPICS_FILE ]] \
        || ! port_busy "$KAFKA_PORT"; then
        rm -f "$KAFKA_DIR/topics.done"
        wait_kafka
        touch "$KAFKA_DIR/topics.done"
    fi
    wait_http alertmanager "http://127.0.0.1:$AM_PORT/-/ready"
    wait_http prometheus "http://127.0.0.1:$PROM_PORT/-/ready"

    if (( ${#STARTED[@]} )); then
        log "up in $((SECONDS - t0))s (started: ${STARTED[*]})"
    else
        log "everything was already running"
    fi
    print_where
}

cmd_down() {
    local purge=0 arg
    for arg in "$@"; do
        case $arg in
            --purge) purge=1 ;;
            *) die "unknown option for down: $arg (only --purge)" ;;
        esac
    done
    local svc pid stopping=() pids=()
    for svc in prometheus alertmanager kafka; do
        if pid=$(running_pid "$svc"); then
            stop_service "$svc"
            stopping+=("$svc")
            pids+=("$pid")
        else
            rm -f "$(pid_file "$svc")"
        fi
    done
    local i
    for i in "${!stopping[@]}"; do
        wait_stopped "${stopping[$i]}" "${pids[$i]}"
    done
    if (( ${#stopping[@]} )); then
        log "stopped: ${stopping[*]}"
    else
        log "nothing was running"
    fi
    if (( purge )); then
        rm -rf "$RUN"
        log "purged $RUN/ (Kafka data, Prometheus TSDB, Alertmanager state, logs)"
    fi
}

cmd_status() {
    local svc pid all=0 where
    for svc in "${SERVICES[@]}"; do
        case $svc in
            kafka) where="127.0.0.1:$KAFKA_PORT (controller :$CONTROLLER_PORT)" ;;
            prometheus) where="http://127.0.0.1:$PROM_PORT/" ;;
            alertmanager) where="http://127.0.0.1:$AM_PORT/" ;;
        esac
        if pid=$(running_pid "$svc"); then
            local health=""
            case $svc in
                kafka) port_busy "$KAFKA_PORT" && health="listening" || health="not listening yet" ;;
                prometheus) http_ok "http://127.0.0.1:$PROM_PORT/-/ready" && health="ready" || health="not ready" ;;
                alertmanager) http_ok "http://127.0.0.1:$AM_PORT/-/ready" && health="ready" || health="not ready" ;;
            esac
            printf '%-13s running  pid %-7s %s  [%s]\n' "$svc" "$pid" "$where" "$health"
        else
            printf '%-13s stopped\n' "$svc"
            all=3
        fi
    done
    return "$all"
}

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

case ${1:-} in
    up) shift; [[ $# -eq 0 ]] || die "up takes no arguments"; cmd_up ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
