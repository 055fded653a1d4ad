"""tollmon: streaming congestion monitor for expressway toll plazas."""

from tollmon import native

native.activate()
