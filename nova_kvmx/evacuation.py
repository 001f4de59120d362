# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Evacuation: an instance of a failed host rebuilt on another one.

Nova's compute manager does the moving (the destination's claim, the
ports bound and the volumes attached to the destination, Placement) and
calls the driver twice, as it does Nova's libvirt driver:

- on the destination, ``spawn`` inside the instance's migration context
  (``instance.numa_topology`` and ``pci_devices`` are the destination's
  claim) while ``instance.host`` still names the failed host. Disks every
  host reaches (RBD, or an instances path shared with the failed host)
  are the instance's only copy: they are used as they are and a failed
  spawn leaves them; disks of the failed host's own are made anew from
  the image.
- on the failed host, once its nova-compute starts again
  (``_destroy_evacuated_instances``), ``destroy`` of each domain it still
  has, with ``destroy_disks`` False when the destination shares its
  storage. With disks on RBD the instance directory (kernel, config
  drive, console log) is this host's own and goes all the same (as
  Nova's ``[workarounds] ensure_libvirt_rbd_instance_dir_cleanup`` does;
  an instances path shared between hosts keeps its disks in files, not
  on RBD).
"""

from nova.compute import task_states

# The task states of a rebuild, an evacuation's included.
REBUILDING = (task_states.REBUILDING,
              task_states.REBUILD_BLOCK_DEVICE_MAPPING,
              task_states.REBUILD_SPAWNING)


def arriving(instance, host):
    """Whether a spawn on ``host`` (the compute service's host) rebuilds
    an evacuated instance: a rebuild of an instance that belongs to
    another host still."""
    return (host is not None and
            instance.task_state == task_states.REBUILD_SPAWNING and
            instance.host != host)


def departed(instance, host):
    """Whether the instance has been evacuated away from ``host``: it
    belongs to another host, or is being rebuilt there."""
    return host is not None and (instance.host != host or
                                 instance.task_state in REBUILDING)
