"""Pure detector logic: no Kafka, no Faust, no clock reads."""
