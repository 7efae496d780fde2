"""`platestream serve`: the OpenALPR web service, the OpenALPR Cloud API and the Plate Recognizer
Snapshot API / SDK, answered by platestream's engine."""
