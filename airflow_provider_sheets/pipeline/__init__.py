"""
The pipeline: one batch run (:mod:`.batch`), its progress and checkpoints (:mod:`.progress`), the
sinks the publish loop hands records to (:mod:`.sinks`), the new-rows probe of the sensor and the
trigger (:mod:`.probe`), and the rules the shells share: how a tab's mapper is made, what a
watermark that no longer fits the tab means (:mod:`.tab`) and what ``on_drift`` does
(:mod:`.drift`).
"""
