"""tollmon: streaming congestion monitor for expressway toll plazas."""
