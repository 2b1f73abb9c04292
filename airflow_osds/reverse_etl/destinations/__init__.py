"""Reverse-ETL destinations behind one interface (:class:`.base.Destination`)."""
