"""collector/hostsetup/containers.py: container ids from cgroups and
``docker inspect``'s answer."""

import json

from collector.hostsetup.containers import container_id_from_cgroup, parse_docker_inspect

CID = "3f1c" + "a" * 60


def test_container_id_from_cgroup_both_drivers():
    assert container_id_from_cgroup(f"0::/docker/{CID}\n") == CID
    assert container_id_from_cgroup(f"0::/system.slice/docker-{CID}.scope\n") == CID
    assert container_id_from_cgroup(f"12:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n") == CID
    assert container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") is None
    assert container_id_from_cgroup("0::/\n") is None


def test_docker_inspect_parsing():
    text = json.dumps([
        {"Id": CID, "Name": "/haproxy", "State": {"Running": True, "Pid": 4242},
         "HostConfig": {"Init": None}, "Config": {"Image": "haproxy:2.6"}},
        {"Id": "b" * 64, "Name": "/worker", "State": {"Running": True, "Pid": 4343}, "HostConfig": {"Init": True}},
        {"Id": "c" * 64, "Name": "/gone", "State": {"Running": False, "Pid": 0}},
    ])
    got = parse_docker_inspect(text)
    assert [(c.name, c.pid, c.init, c.image) for c in got] == [("haproxy", 4242, None, "haproxy:2.6"),
                                                             ("worker", 4343, True, "")]
