"""Getting predictions out: the versioned message schema, ZeroMQ and MQTT publishers, and the recorder.

``schema``      the ``rt_physio.prediction/1`` message (JSON Schema, JSON / msgpack encoding)
``base``        the :class:`~rt_physio.publish.base.Publisher` protocol and topic names
``publishers``  :func:`~rt_physio.publish.publishers.open_publisher`: the publisher for a publish URL
``url_query``   the options of a publish URL (``?format=msgpack``), read alike by every publisher
``zmq``         ZeroMQ PUB (``zmq://HOST:PORT``)
``mqtt``        MQTT via aiomqtt (``mqtt://[USER@]HOST:PORT[/PREFIX]``): pred, retained state, status + last will
``recorder``    crash-safe recording of raw streams and predictions (Parquet + journal); read back with
                :func:`rt_physio.io.read_sessions`
"""
