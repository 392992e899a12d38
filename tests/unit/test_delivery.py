import random

from aiokafka.partitioner import DefaultPartitioner

from stream.topics import key_hash


def test_keyed_records_go_where_kafkas_default_partitioner_puts_them():
    rng = random.Random(7)
    partitioner = DefaultPartitioner()
    for _ in range(3000):
        key = rng.randbytes(rng.randint(1, 64))
        every = list(range(rng.randint(1, 12)))
        assert every[key_hash(key) % len(every)] == partitioner(key, every, every)
