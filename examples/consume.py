#!/usr/bin/python3
"""Reads stagemetapublish detection messages back from MQTT or Kafka.

  consume.py mqtt  BROKER_HOST:PORT TOPIC  [--count N] [--json]
  consume.py kafka BOOTSTRAP_SERVERS TOPIC [--group G] [--count N] [--json]

Prints one line per message (camera, frame, detections, latency) or, with
--json, the message itself. Needs python3-paho-mqtt or python3-confluent-kafka
(Debian packages). Prints "ready" on stderr once subscribed. The message
format is docs/detection-message.schema.json (version 1).
"""
import argparse
import json
import sys
import time


def summarize(msg, as_json):
    if as_json:
        return json.dumps(msg, separators=(",", ":"))
    latency_ms = (time.time() * 1e6 - msg["timestamp_us"]) / 1000.0
    dets = ", ".join(
        f"{d['label'] or '?'} "
        f"{'?' if d['score'] is None else format(d['score'], '.2f')}"
        f"@({d['box']['x']:.0f},{d['box']['y']:.0f},"
        f"{d['box']['width']:.0f}x{d['box']['height']:.0f})"
        for d in msg["detections"])
    return (f"{msg['source_id']} frame {msg['frame_number']} "
            f"{msg['width']}x{msg['height']} {len(msg['detections'])} "
            f"detection(s) latency {latency_ms:.1f} ms"
            + (f": {dets}" if dets else ""))


class Printer:
    """Decodes, checks the version, prints; counts toward --count."""

    def __init__(self, args):
        self.args = args
        self.seen = 0

    def handle(self, payload, key=None):
        msg = json.loads(payload)
        if msg.get("version") != 1:
            print(f"skipping message version {msg.get('version')}",
                  file=sys.stderr)
            return
        if key is not None and key != msg["source_id"]:
            print(f"warning: key {key!r} != source_id {msg['source_id']!r}",
                  file=sys.stderr)
        print(summarize(msg, self.args.json), flush=True)
        self.seen += 1

    def done(self):
        return self.args.count and self.seen >= self.args.count


def run_mqtt(args, printer):
    import paho.mqtt.client as mqtt

    host, _, port = args.address.rpartition(":")
    client = mqtt.Client()

    def on_connect(c, userdata, flags, rc):
        if rc != 0:
            sys.exit(f"MQTT broker at {args.address} refused: "
                     f"{mqtt.connack_string(rc)}")
        c.subscribe(args.topic, qos=1)

    def on_subscribe(c, userdata, mid, granted_qos):
        print("ready", file=sys.stderr, flush=True)

    def on_message(c, userdata, m):
        printer.handle(m.payload)
        if printer.done():
            c.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host or "localhost", int(port or 1883))
    client.loop_forever()


def run_kafka(args, printer):
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": args.address,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
    })

    def on_assign(c, partitions):
        print("ready", file=sys.stderr, flush=True)

    consumer.subscribe([args.topic], on_assign=on_assign)
    try:
        while not printer.done():
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                print(f"consumer: {m.error()}", file=sys.stderr)
                continue
            key = m.key().decode() if m.key() is not None else None
            printer.handle(m.value(), key)
    finally:
        consumer.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", choices=["mqtt", "kafka"])
    p.add_argument("address", help="MQTT host:port or Kafka bootstrap servers")
    p.add_argument("topic")
    p.add_argument("--group", default="detections-consumer",
                   help="Kafka consumer group (consumers in one group share "
                   "the partitions)")
    p.add_argument("--count", type=int, default=0,
                   help="exit after this many messages (0: never)")
    p.add_argument("--json", action="store_true",
                   help="print the messages, not a summary")
    args = p.parse_args()
    printer = Printer(args)
    try:
        (run_mqtt if args.method == "mqtt" else run_kafka)(args, printer)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
