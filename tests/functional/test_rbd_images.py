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

"""Instance disks on the tests' Ceph cluster (``[libvirt] images_type =
rbd``), given to real guests.

The compute hosts keep root, ephemeral and swap disks in the ``vms``
pool as a cephx user of their own, whose key is in a libvirt secret on
each host, as an operator sets them up. Glance's RBD store is played by
the tests: the guest image's data is imported into the ``images`` pool
as Glance's store does it (``images/<id>@snap``, protected) and the
image record has its location, so the root disk is a copy-on-write
clone; a snapshot of the server goes back there as a clone, and Glance
(Nova's fixture) records the location Nova gives it. The guest
(tests/functional/volume_image.py) reports on its console what it finds
on each disk: the image's token on the root disk, a token of its own on
the blank ones, which survives the moves.

Skipped unless KVMX_CEPH=1 (tests/functional/ceph.py).
"""

import json
import os
import socket
import subprocess
import tempfile

import fixtures
from lxml import etree

from tests.functional import base
from tests.functional import ceph
from tests.functional import guest_image
from tests.functional import test_live_migration
from tests.functional import volume_base
from tests.functional import volume_image

DEST = test_live_migration.DEST
GiB = 1024 ** 3
POOL = 'vms'
# The compute hosts' cephx user: as Ceph's guide makes client.nova, plus
# writing Glance's pool, which a snapshot cloned into it needs (without,
# Nova's libvirt driver uploads snapshots through the host, as here).
USER = 'kvmx-compute'
CAPS = ('mon', 'profile rbd',
        'osd', 'profile rbd pool=vms, profile rbd pool=images',
        'mgr', 'profile rbd pool=vms, profile rbd pool=images')


class RBDImagesMixin(volume_base.VolumesMixin):
    """For a RealLibvirtTestCase: call :meth:`setup_ceph` before its
    setUp and :meth:`use_rbd` before a compute service starts."""

    # Root: the test drives its Ceph cluster with the admin keyring
    # (root's) from set-up to the last check; tests/cloud runs
    # nova-compute as nova on Ceph.
    AS_NOVA = False

    def use_rbd(self, user=USER, ceph_conf=None, secret_key=None):
        """Instance disks in pool vms as ``user``, whose key the libvirt
        secret holds (``secret_key``: another one)."""
        ceph.python_bindings()
        self.rbd_user = user
        self.rbd_key = self.user_key(user)
        self.rbd_secret = self.add_secret(
            self.libvirt(), secret_key or self.rbd_key,
            usage='client.%s' % user)
        self.flags(images_type='rbd', images_rbd_pool=POOL,
                   images_rbd_ceph_conf=ceph_conf or self.ceph.conf,
                   rbd_user=user, rbd_secret_uuid=self.rbd_secret,
                   rbd_connect_timeout=3, group='libvirt')
        self.secrets_before = set(self.libvirt().listSecrets())
        self.track_glance_locations()

    def user_key(self, user):
        """The key of a cephx user, made (with CAPS) if it is not one of
        deploy/ceph's; its keyring where ceph.conf finds it."""
        if user != 'nova':
            keyring = os.path.join(os.path.dirname(self.ceph.conf),
                                   'ceph.client.%s.keyring' % user)
            self.ceph.run('ceph', 'auth', 'get-or-create', 'client.' + user,
                          *CAPS, '-o', keyring)
        return self.ceph.run('ceph', 'auth', 'get-key',
                             'client.' + user).stdout.strip()

    def track_glance_locations(self):
        """Glance records the location Nova gives a snapshot (Nova's
        fixture keeps the field as sent)."""
        real = self.glance.update

        def update(context, image_id, metadata, data=None,
                   purge_props=False):
            metadata = dict(metadata)
            location = metadata.pop('location', None)
            image = real(context, image_id, metadata, data=data,
                         purge_props=purge_props)
            if location:
                image['locations'] = [{'url': location, 'metadata': {}}]
                image['direct_url'] = location
                self.addCleanup(self.remove_glance_image, image_id)
            return image

        self.useFixture(fixtures.MockPatchObject(self.glance, 'update',
                                                 side_effect=update))

    def guest_image_in_ceph(self):
        """The volume guest's image, its data in Glance's pool as
        Glance's RBD store keeps it."""
        image_id = self.create_volume_guest_image()
        name = 'images/%s' % image_id
        self.addCleanup(self.remove_glance_image, image_id)
        self.ceph.rbd('import', '--image-format', '2',
                      volume_image.get_artifacts().root_disk, name,
                      user='glance')
        self.ceph.rbd('snap', 'create', name + '@snap', user='glance')
        self.ceph.rbd('snap', 'protect', name + '@snap', user='glance')
        url = 'rbd://%s/images/%s/snap' % (self.ceph.fsid, image_id)
        self.glance.images[image_id]['locations'] = [
            {'url': url, 'metadata': {}}]
        self.glance.images[image_id]['direct_url'] = url
        return image_id

    def remove_glance_image(self, image_id):
        name = 'images/%s' % image_id
        self.ceph.run('rbd', 'snap', 'unprotect', name + '@snap',
                      check=False)
        self.ceph.run('rbd', 'snap', 'purge', name, check=False)
        self.ceph.run('rbd', 'rm', name, check=False)

    # -- what is in the cluster -----------------------------------------

    def rbd_disks(self, server):
        """The names of the server's images in the pool."""
        prefix = server['id'] + '_'
        return sorted(name for name in self.ceph.rbd(
            'ls', POOL, user='admin').split() if name.startswith(prefix))

    def rbd_info(self, server, disk='disk'):
        return json.loads(self.ceph.rbd(
            'info', '--format', 'json',
            '%s/%s_%s' % (POOL, server['id'], disk), user='admin'))

    def rbd_snaps(self, server, disk='disk'):
        return [s['name'] for s in json.loads(self.ceph.rbd(
            'snap', 'ls', '--format', 'json', '%s/%s_%s' % (
                POOL, server['id'], disk), user='admin'))]

    def first_sector(self, spec):
        """The first 512 bytes of an RBD image or snapshot."""
        with tempfile.TemporaryDirectory(dir=self.instances_path) as tmp:
            path = os.path.join(tmp, 'export')
            self.ceph.rbd('export', spec, path, user='admin')
            with open(path, 'rb') as f:
                return f.read(512)

    def assert_rbd_disks(self, server, conn=None):
        """The domain's root, ephemeral and swap disks are the server's
        RBD images, opened as the compute user with its secret."""
        dom = (conn or self.libvirt()).lookupByUUIDString(server['id'])
        disks = etree.fromstring(dom.XMLDesc(0)).findall('devices/disk')
        network = [(d.find('target').get('dev'), d.find('source').get(
            'name'), d.find('auth').get('username'), d.find(
            'auth/secret').get('uuid')) for d in disks
            if d.get('type') == 'network']
        self.assertEqual(
            [('vd%s' % dev, '%s/%s_%s' % (POOL, server['id'], name),
              self.rbd_user, self.rbd_secret)
             for dev, name in zip('abc', ('disk', 'disk.eph0', 'disk.swap'))],
            network)

    def assert_nothing_of(self, server, dirs=()):
        """No RBD image, domain, instance directory or secret of the
        server is left."""
        self.assertEqual([], self.rbd_disks(server))
        self.assertFalse(self.domain_exists(server))
        for directory in (self.instances_path,) + tuple(dirs):
            self.assertFalse(os.path.exists(os.path.join(directory,
                                                         server['id'])))
        self.assert_no_secret_leaked()


class RBDImagesTest(RBDImagesMixin, test_live_migration.TwoHostsTestCase):
    """A server on RBD disks booted, snapshotted, resized (reverted and
    confirmed), live-migrated and deleted between the two libvirt hosts
    of test_live_migration; no disk is ever copied."""

    DEST_SSH = True

    def setUp(self):
        self.setup_ceph()
        super().setUp()
        self.image_id = self.guest_image_in_ceph()
        self.flavor_id = self.rbd_flavor('kvmx.rbd', disk=1, swap=16)
        self.bigger_id = self.rbd_flavor('kvmx.rbd.big', disk=2, swap=32)

    def hold_hugepages(self):
        # TwoHostsTestCase's hugepage flavor is not booted here.
        pass

    def start_compute(self):
        # Before each compute service starts: init_host reads the options
        # and looks for the libvirt secret.
        self.use_rbd()
        return super().start_compute()

    def start_service(self, name, host=None, **kwargs):
        if name == 'compute' and host == DEST:
            self.add_secret(self.dest.connection(), self.rbd_key,
                            usage='client.%s' % USER,
                            secret_uuid=self.rbd_secret)
        return super().start_service(name, host=host, **kwargs)

    def rbd_flavor(self, name, disk, swap):
        return self._create_flavor(
            name=name, vcpu=1, memory_mb=256, disk=disk, ephemeral=1,
            swap=swap, extra_spec={'hw:cpu_policy': 'dedicated'})

    def boot_on_rbd(self):
        server = self.boot(self.compute_host)
        self.assertEqual(
            ['%s_disk' % server['id'], '%s_disk.eph0' % server['id'],
             '%s_disk.swap' % server['id']], self.rbd_disks(server))
        info = self.rbd_info(server)
        # A copy-on-write clone of Glance's image, grown to the flavor.
        self.assertEqual(('images', self.image_id, 'snap', GiB), (
            info['parent']['pool'], info['parent']['image'],
            info['parent']['snapshot'], info['size']))
        self.assert_rbd_disks(server)
        self.assertEqual([], [
            f for f in os.listdir(self.instance_dir(server))
            if f.startswith('disk') and f != 'disk.config'])
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB),
            ('vdb', 'wrote', None, GiB)])
        return server, self.token(server, 'vdb')

    def test_snapshot_resize_revert_confirm_delete(self):
        server, token = self.boot_on_rbd()

        # Snapshot: cloned into Glance's pool, flattened, located.
        snap_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        server = self.wait_for_task_done(server)
        image = self.glance.show(self.ctxt, snap_id)
        self.assertEqual(
            ['rbd://%s/images/%s/snap' % (self.ceph.fsid, snap_id)],
            [loc['url'] for loc in image['locations']])
        self.assertEqual('raw', image['disk_format'])
        info = json.loads(self.ceph.rbd('info', '--format', 'json',
                                        'images/%s' % snap_id, user='admin'))
        self.assertNotIn('parent', info)
        self.assertTrue(self.first_sector('images/%s@snap' % snap_id)
                        .startswith(b'KVMX-TOKEN:' +
                                    volume_image.IMAGE_TOKEN.encode()))
        self.assertEqual([], self.rbd_snaps(server))

        # Resize to compute2: the disks grow there, after a snapshot...
        server = self.resize(server, self.bigger_id)
        self.assertEqual(2 * GiB, self.rbd_info(server)['size'])
        self.assertEqual(['nova-resize'], self.rbd_snaps(server))
        self.assertEqual(['nova-resize'], self.rbd_snaps(server, 'disk.eph0'))
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, 2 * GiB),
            ('vdb', 'read', token, GiB)])
        # ... which a revert rolls back to.
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(self.compute_host,
                         server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(GiB, self.rbd_info(server)['size'])
        self.assertEqual([], self.rbd_snaps(server))
        self.assertFalse(os.path.exists(os.path.join(self.dest_instances,
                                                     server['id'])))
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 2)
        self.assert_rbd_disks(server)

        # Resize again, confirmed: the snapshot goes, the source lets go.
        server = self.resize(server, self.bigger_id)
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual([], self.rbd_snaps(server))
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assert_rbd_disks(server, conn=self.dest_conn)
        self.assertEqual(2 * GiB, self.rbd_info(server)['size'])

        self._delete_server(server)
        self.assert_nothing_of(server, (self.dest_instances,))
        self.assertNotIn(server['id'], [
            d.UUIDString() for d in self.dest_conn.listAllDomains()])

    def resize(self, server, flavor_id):
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': flavor_id}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assert_rbd_disks(server, conn=self.dest_conn)
        return server

    def test_live_migration_copies_no_disk(self):
        server, token = self.boot_on_rbd()
        self.live_migrate(server)
        migration = self.wait_for_migration(
            server, ('completed', 'error', 'failed'))
        self.assertEqual('completed', migration['status'])
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assertIn('starting (no disk to copy)',
                      self.stdlog.logger.output)
        self.assert_rbd_disks(server, conn=self.dest_conn)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))

        # The same disks: restarted there, the guest reads its token.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 1)
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB),
            ('vdb', 'read', token, GiB)])

        self._delete_server(server)
        self.assert_nothing_of(server, (self.dest_instances,))


class RBDFaultsTest(RBDImagesMixin, base.RealLibvirtTestCase):
    """Ceph that cannot be reached or refuses the key fails the build
    with an error naming the cause, and leaves nothing: no RBD image,
    domain, file or secret."""

    START_COMPUTE = False

    def setUp(self):
        self.setup_ceph()
        super().setUp()
        self.flavor_id = self._create_flavor(
            name='kvmx.rbd', vcpu=1, memory_mb=256, disk=0, ephemeral=1,
            swap=16)

    def conf_copy(self):
        """A ceph.conf of the cluster, and the compute user's keyring, in
        a directory of their own: the tests break them once the compute
        service runs (it reads the pool's usage when it starts)."""
        directory = tempfile.mkdtemp(
            dir=os.path.dirname(self.instances_path))
        with open(self.ceph.conf) as f:
            text = f.read()
        with open(os.path.join(directory, 'ceph.conf'), 'w') as f:
            f.write(text.replace(
                'keyring = %s/' % os.path.dirname(self.ceph.conf),
                'keyring = %s/' % directory))
        self.write_keyring(directory, self.user_key(USER))
        return os.path.join(directory, 'ceph.conf')

    @staticmethod
    def write_keyring(directory, key):
        with open(os.path.join(directory, 'ceph.client.%s.keyring' % USER),
                  'w') as f:
            f.write('[client.%s]\n\tkey = %s\n' % (USER, key))

    def boot_fails(self, fault):
        image_id = self.guest_image_in_ceph()
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.flavor_id, networks='none',
            expected_state='ERROR')
        self.assertIn(fault, server['fault']['message'])
        self.assert_nothing_of(server)
        return server

    def test_unreachable_cluster(self):
        conf = self.conf_copy()
        self.use_rbd(ceph_conf=conf)
        self.start_compute()
        with open(conf) as f:
            text = f.read()
        with socket.socket() as closed:
            closed.bind(('127.0.0.1', 0))
            with open(conf, 'w') as f:
                f.write(text.replace(
                    'v1:127.0.0.1:%s' % self.ceph.mon_port,
                    'v1:127.0.0.1:%d' % closed.getsockname()[1]))
            self.boot_fails('no Ceph monitor answered within 3 s')

    def test_wrong_key_in_the_keyring(self):
        conf = self.conf_copy()
        self.use_rbd(ceph_conf=conf)
        self.start_compute()
        self.write_keyring(os.path.dirname(conf), subprocess.run(
            ['ceph-authtool', '--gen-print-key'], capture_output=True,
            text=True, check=True).stdout.strip())
        self.boot_fails('cephx refused client.%s: wrong key' % USER)

    def test_wrong_key_in_the_libvirt_secret(self):
        self.use_rbd(secret_key=self.ceph.key('cinder'))
        self.start_compute()
        self.boot_fails('QEMU cannot open %s/' % POOL)

    def test_image_elsewhere_is_fetched_and_imported(self):
        """An image Glance does not keep in this cluster: fetched into the
        image cache and imported, grown to the flavor's root disk."""
        self.use_rbd(user='nova')
        self.start_compute()
        flavor_id = self._create_flavor(name='kvmx.rbd.1g', vcpu=1,
                                        memory_mb=256, disk=1, ephemeral=0)
        server = self._create_server(
            image_uuid=self.create_volume_guest_image(),
            flavor_id=flavor_id, networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB)])
        self.assertEqual(['%s_disk' % server['id']], self.rbd_disks(server))
        info = self.rbd_info(server)
        self.assertNotIn('parent', info)
        self.assertEqual(GiB, info['size'])
        self._delete_server(server)
        self.assert_nothing_of(server)

    def test_snapshot_uploaded_when_glance_pool_is_read_only(self):
        """As Ceph's guide makes client.nova (Glance's pool read-only), a
        snapshot is exported and uploaded."""
        self.use_rbd(user='nova')
        self.start_compute()
        image_id = self.guest_image_in_ceph()
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        snap_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        self.wait_for_task_done(server)
        image = self.glance.show(self.ctxt, snap_id)
        self.assertNotIn('locations', image)
        self.assertEqual('raw', image['disk_format'])
        self.assertTrue(self.glance._imagedata[snap_id].startswith(
            b'KVMX-TOKEN:' + volume_image.IMAGE_TOKEN.encode()))
        self.assertEqual([], self.rbd_snaps(server))
        self._delete_server(server)
        self.assert_nothing_of(server)
