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

"""Evacuation as the driver sees it: which spawn rebuilds an evacuated
instance and which disks it reuses (and keeps when it fails), and what the
failed host removes when its nova-compute comes back. The instance
storage is real (files in a temporary instances path; RBD is the
recording fake of test_rbd_storage); tests/functional/test_evacuate.py
evacuates real guests between two libvirtd."""

import os
import types

import ddt
import fixtures
from nova.compute import task_states
from nova import exception
from oslo_utils import units
import testtools

from nova_kvmx import driver
from nova_kvmx import exception as kvmx_exception
from nova_kvmx import evacuation
from nova_kvmx import lifecycle
from nova_kvmx import storage
from nova_kvmx.storage import rbd
from tests.unit import builders as b
from tests.unit import test_rbd_storage

SOURCE, DEST = 'compute1', 'compute2'


@ddt.ddt
class PredicatesTest(testtools.TestCase):

    @ddt.data(
        # (task state, instance.host, this host, an evacuation's spawn)
        (task_states.REBUILD_SPAWNING, SOURCE, DEST, True),
        (task_states.REBUILD_SPAWNING, DEST, DEST, False),   # a rebuild
        (task_states.SPAWNING, None, DEST, False),           # a boot
        (task_states.REBUILD_SPAWNING, SOURCE, None, False),  # no host yet
    )
    @ddt.unpack
    def test_arriving(self, task_state, instance_host, host, expected):
        inst = b.instance()
        inst.task_state, inst.host = task_state, instance_host
        self.assertEqual(expected, evacuation.arriving(inst, host))

    @ddt.data(
        # (task state, instance.host, this host, evacuated away from it)
        (None, DEST, SOURCE, True),        # evacuated, done
        (task_states.REBUILD_SPAWNING, SOURCE, SOURCE, True),  # under way
        (None, SOURCE, SOURCE, False),     # its own
        (task_states.RESIZE_MIGRATING, SOURCE, SOURCE, False),
        (None, DEST, None, False),
    )
    @ddt.unpack
    def test_departed(self, task_state, instance_host, host, expected):
        inst = b.instance()
        inst.task_state, inst.host = task_state, instance_host
        self.assertEqual(expected, evacuation.departed(inst, host))


class FakeHost(object):
    """A libvirt host without the instance's domain."""

    def get_connection(self):
        return None

    def get_guest(self, instance):
        raise exception.InstanceNotFound(instance_id=instance.uuid)


class FakeVolumes(object):
    def connect_all(self, context, instance, bdms, rollback=True):
        pass

    def disconnect_all(self, context, instance, bdms, force=False):
        pass

    def check_rbd(self, disk, instance, failure):
        pass


class FakeNetwork(object):
    def unplug_all(self, instance, network_info):
        pass


class EvacuationTestCase(testtools.TestCase):
    """A real instance storage, on RBD (``on_rbd``) or files."""

    on_rbd = True

    def setUp(self):
        super().setUp()
        self.instances = self.useFixture(fixtures.TempDir()).path
        self.rbd = test_rbd_storage.FakeRBD() if self.on_rbd else None
        self.storage = storage.InstanceStorage(self.instances, '_base',
                                               rbd=self.rbd)
        self.useFixture(fixtures.MockPatchObject(
            self.storage, 'cached_image', side_effect=self.base_image))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.configdrive.required_by', return_value=False))
        self.lifecycle = lifecycle.GuestLifecycle(
            FakeHost(), self.storage,
            lambda: types.SimpleNamespace(virt_type='qemu'), 5,
            FakeNetwork(), None, FakeVolumes())
        self.useFixture(fixtures.MockPatchObject(self.lifecycle,
                                                 'check_devices'))
        self.useFixture(fixtures.MockPatchObject(
            self.lifecycle, 'domain_xml', return_value='<domain/>'))
        self.started = []
        self.useFixture(fixtures.MockPatchObject(
            self.lifecycle, 'start_with_network',
            side_effect=lambda inst, xml, *args, **kw:
                self.started.append(xml)))
        self.instance = b.instance(flavor_obj=b.flavor(root_gb=1))
        self.instance.host = SOURCE
        self.instance.task_state = task_states.REBUILD_SPAWNING
        self.dir = self.storage.instance_dir(self.instance)

    def base_image(self, context, image_id, limit=None, trusted_certs=None):
        path = os.path.join(self.instances, 'base')
        with open(path, 'wb') as f:
            f.truncate(units.Mi)
        return path

    def spawn(self, evacuated=True):
        return self.lifecycle.spawn(None, self.instance, b.image(), None,
                                    None, [], None, evacuated=evacuated)

    def fail_start(self):
        self.lifecycle.start_with_network.side_effect = \
            exception.InternalError('QEMU exited')


class SpawnOnRBDTest(EvacuationTestCase):
    """The disks on RBD are the evacuated instance's: the destination
    uses them and keeps them whatever happens; its own files (instance
    directory) are made anew."""

    def setUp(self):
        super().setUp()
        # What the failed host left on RBD.
        self.rbd.existing.update({rbd.ROOT})

    def test_uses_the_disks_on_rbd(self):
        self.spawn()
        self.assertEqual(['<domain/>'], self.started)
        self.assertEqual([], self.rbd.calls)
        self.assertTrue(os.path.isdir(self.dir))

    def test_failed_start_keeps_the_disks(self):
        self.fail_start()
        self.assertRaises(exception.InternalError, self.spawn)
        self.assertEqual({rbd.ROOT}, self.rbd.existing)
        self.assertNotIn(('remove',), self.rbd.calls)
        self.assertFalse(os.path.exists(self.dir))

    def test_not_an_evacuation_refuses_the_disks_of_another(self):
        self.assertRaises(kvmx_exception.RBDImageExists, self.spawn,
                          evacuated=False)
        self.assertEqual({rbd.ROOT}, self.rbd.existing)


class SpawnWithFilesTest(EvacuationTestCase):
    """Disks in files: from the image when the failed host kept them, as
    they are when the instances path is shared with it."""

    on_rbd = False

    def test_disks_made_from_the_image(self):
        self.spawn()
        self.assertTrue(os.path.isfile(os.path.join(self.dir, 'disk')))

    def test_failed_start_leaves_nothing(self):
        self.fail_start()
        self.assertRaises(exception.InternalError, self.spawn)
        self.assertFalse(os.path.exists(self.dir))

    def shared_directory(self):
        os.makedirs(self.dir)
        disk = os.path.join(self.dir, 'disk')
        with open(disk, 'w') as f:
            f.write('the guest data')
        return disk

    def test_shared_directory_used_as_it_is(self):
        disk = self.shared_directory()
        self.spawn()
        self.assertEqual(['<domain/>'], self.started)
        with open(disk) as f:
            self.assertEqual('the guest data', f.read())
        self.storage.cached_image.assert_not_called()

    def test_failed_start_keeps_the_shared_directory(self):
        disk = self.shared_directory()
        self.fail_start()
        self.assertRaises(exception.InternalError, self.spawn)
        self.assertTrue(os.path.isfile(disk))

    def test_not_an_evacuation_refuses_an_existing_directory(self):
        disk = self.shared_directory()
        self.assertRaises(exception.InstanceExists, self.spawn,
                          evacuated=False)
        self.assertTrue(os.path.isfile(disk))


class FailedHostCleanupTest(EvacuationTestCase):
    """The failed host's nova-compute starts again: Nova's compute manager
    destroys the evacuated instance's domain there, with destroy_disks
    False when the destination shares the disks."""

    def setUp(self):
        super().setUp()
        self.instance.task_state = None
        self.instance.host = SOURCE
        self.storage.prepare(None, self.instance, b.image())
        self.instance.host = DEST
        self.driver = driver.KVMXDriver.__new__(driver.KVMXDriver)
        self.driver._storage = self.storage
        self.driver._lifecycle = self.lifecycle
        self.driver._compute_host = SOURCE

    def test_directory_goes_disks_on_rbd_stay(self):
        self.driver.destroy(None, self.instance, [], {}, destroy_disks=False)
        self.assertFalse(os.path.exists(self.dir))
        self.assertEqual({rbd.ROOT}, self.rbd.existing)

    def test_deleted_meanwhile_everything_goes(self):
        self.driver.destroy(None, self.instance, [], {}, destroy_disks=True)
        self.assertFalse(os.path.exists(self.dir))
        self.assertEqual(set(), self.rbd.existing)

    def test_instance_still_here_keeps_its_files(self):
        # Not evacuated (a cross-cell resize's source keeps everything).
        self.instance.host = SOURCE
        self.instance.task_state = task_states.RESIZE_MIGRATING
        self.driver.destroy(None, self.instance, [], {}, destroy_disks=False)
        self.assertTrue(os.path.isdir(self.dir))
        self.assertEqual({rbd.ROOT}, self.rbd.existing)

    def test_rbd_disks_are_on_disk_for_nova(self):
        # The compute manager asks where the instance is rebuilt.
        other = b.instance(uuid='5d4b8f5c-1a55-4a8e-9b0e-7b3c0f0d8a11')
        self.assertTrue(self.driver.instance_on_disk(other))


class FilesInstanceOnDiskTest(EvacuationTestCase):
    on_rbd = False

    def test_only_a_shared_directory(self):
        drv = driver.KVMXDriver.__new__(driver.KVMXDriver)
        drv._storage = self.storage
        self.assertFalse(drv.instance_on_disk(self.instance))
        os.makedirs(self.dir)
        self.assertTrue(drv.instance_on_disk(self.instance))

    def test_capability(self):
        self.assertTrue(driver.KVMXDriver.capabilities['supports_evacuate'])
