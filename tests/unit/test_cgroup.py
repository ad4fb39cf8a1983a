"""collector/cgroup.py: the container a crashed process ran in, from its
/proc/PID/cgroup, for every runtime and cgroup layout."""

import pytest

from collector.cgroup import ContainerRef, container_from_cgroup, is_container_id

CID = "3f1c8e8b2a4d4c6e9b0a7f5e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CID2 = "a" * 64
POD = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


@pytest.mark.parametrize("text, runtime, pod", [
    # Docker, cgroup v1, cgroupfs driver
    (f"12:memory:/docker/{CID}\n11:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}\n0::/\n", "docker", None),
    # Docker, cgroup v2, cgroupfs driver
    (f"0::/docker/{CID}\n", "docker", None),
    # Docker, cgroup v2, systemd driver
    (f"0::/system.slice/docker-{CID}.scope\n", "docker", None),
    # Docker, hybrid (v1 controllers + v2), systemd driver
    (f"5:devices:/system.slice/docker-{CID}.scope\n0::/system.slice/docker-{CID}.scope\n", "docker", None),
    # containerd (ctr / nerdctl) with cgroupfs: <namespace>/<id>
    (f"0::/default/{CID}\n", "containerd", None),
    (f"0::/containerd/{CID}\n", "containerd", None),
    (f"0::/user.slice/nerdctl-{CID}.scope\n", "containerd", None),
    # Kubernetes, cgroupfs driver (v1), burstable and guaranteed
    (f"4:memory:/kubepods/burstable/pod{POD}/{CID}\n", "kubernetes", POD),
    (f"4:memory:/kubepods/pod{POD}/{CID}\n", "kubernetes", POD),
    # Kubernetes, systemd driver, containerd / cri-o / docker
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope\n", "containerd", POD),
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/"
     f"crio-{CID}.scope\n", "cri-o", POD),
    (f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/docker-{CID}.scope\n", "docker", POD),
    # Podman
    (f"0::/machine.slice/libpod-{CID}.scope/container\n", "podman", None),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope\n", "podman", None),
])
def test_container_layouts(text, runtime, pod):
    ref = container_from_cgroup(text)
    assert ref is not None and ref.id == CID and ref.runtime == runtime and ref.pod_uid == pod
    assert is_container_id(ref.id)


def test_not_a_container():
    for text in ("0::/\n", "0::/user.slice/user-0.slice/session-3.scope\n",
                 "0::/system.slice/docker.service\n", "12:memory:/\n", "",
                 f"0::/system.slice/crio-conmon-{CID}.scope\n",  # the monitor, not the container
                 f"0::/docker/{CID.upper()}\n",  # ids are lowercase
                 f"0::/docker/{CID[:-1]}\n", f"0::/docker/{CID}0\n",  # 63 and 65 digits
                 f"0::/docker/{CID[:-1]}g\n", f"0::/somewhere/{CID}\n", "garbage\n\x00\n"):
        assert container_from_cgroup(text) is None, text


def test_nested_containers_give_the_outer_one():
    ref = container_from_cgroup(f"0::/docker/{CID}/docker/{CID2}\n")
    assert ref == ContainerRef("docker", CID, None, f"/docker/{CID}/docker/{CID2}")


def test_container_id_validation():
    assert is_container_id(CID)
    for bad in (CID.upper(), CID[:12], CID + "\n", f"../{CID[3:]}", None, 42, "g" * 64):
        assert not is_container_id(bad)
