"""Pure detector logic: no Kafka, no Faust, no clock reads."""

from tollmon import native

native.activate()
