/** The launcher's --help text (cli.ts prints it; README's Usage section shows the same). */
export const USAGE = `Usage: lguest [options] <mem-in-mb> <vmlinux|bzImage> [kernel args...]
       lguest [options] --config=<vm.yaml> [<mem-in-mb> [<kernel> [kernel args...]]]
       lguest [options] <vm.yaml>
       lguest run [options] <vmlinux|bzImage> [--] <command...>   (see lguest run --help)

Boots a Linux kernel (ELF vmlinux or bzImage) on /dev/kvm, with two consoles
on this terminal: a serial port (COM1, ttyS0) and a virtio console (hvc0, the
last virtio device). Both print here; the keyboard goes to hvc0 if the last
console= on the kernel command line names it, otherwise to ttyS0.

Options:
  --initrd=<file>        load an initrd/initramfs for the kernel
  --block=<file>[,ro]    add a virtio block device backed by <file> (repeatable;
                         the first is /dev/vda; ,ro makes it read-only)
  --tunnet=<ip>          add a virtio network device on a new tap (tapN) whose
                         host side gets <ip>/24 and is brought up (routed)
  --tunnet=bridge:<br>   ... or whose host side joins the existing bridge <br>
                         (bridged); repeatable, the first is the guest's eth0;
                         the guest's MAC is random and locally administered
  --net=user[,hostfwd=tcp:<hostport>-:<guestport>]...
                         add a virtio network device on a user-mode network
                         (passt: DHCP, DNS, outbound TCP/UDP; no root needed);
                         hostfwd= (tcp or udp, repeatable) forwards a host port
                         into the guest, t=<spec>/u=<spec> pass passt's own
                         -t/-u syntax; repeatable, after the --tunnet cards
  --rng                  add a virtio entropy device (fed by getrandom)
  --config=<file>        read the machine from a YAML file (keys: memory, kernel,
                         initrd, cmdline, cpus, acpi, entry, disks, networks, rng,
                         verbose, timings; paths relative to the file); options
                         and arguments given here override the file's, and a
                         --block (or --tunnet/--net) here replaces the file's
                         whole list of disks (networks)
  --print-config         print the effective configuration as YAML and exit
  --cpus=<n>             give the guest n vCPUs (default 1, at most 64); the
                         kernel starts the others itself (needs CONFIG_SMP)
  --no-acpi              no ACPI tables: declare the virtio devices with
                         virtio_mmio.device= words on the kernel command line
                         instead (for kernels without CONFIG_ACPI)
  --entry=<how>          how the kernel is entered: auto (default: the PVH
                         entry if the kernel is an ELF with Xen's PVH note,
                         else the 64-bit boot protocol), pvh, or linux64
  -v, --verbose          log boot decisions and unclaimed device accesses
  --timings              at exit, print when each phase ended, in ms since the
                         launcher started: runtime up, modules loaded, VM built,
                         kernel entered, first console byte, boot-timer writes,
                         guest stopped, torn down
  -h, --help             show this help
  --version              show the version

Three Ctrl-C within one second stop the guest (exit status 2).
LGUEST_KVM=<path> in the environment uses another KVM device node.
Boot timer: a guest's byte write to guest physical address 0xc0000000 (busybox:
devmem 0xc0000000 8 123) prints "boot timer: <ms> ms since the launcher started"
with --verbose or --timings.
Exit status: 0 when the guest shuts down or reboots, 1 on errors, 2 after three Ctrl-C,
129/130/143 when stopped by SIGHUP/SIGINT/SIGTERM.

Examples:
  lguest --initrd=initramfs.cpio.gz 256 bzImage console=ttyS0 earlyprintk=serial
  lguest --block=disk.img --block=iso.img,ro 512 bzImage root=/dev/vda console=hvc0
  lguest --tunnet=192.168.19.1 256 bzImage console=ttyS0 ip=192.168.19.2::192.168.19.1:255.255.255.0
  lguest --tunnet=bridge:br0 --rng 256 bzImage console=hvc0
  lguest --net=user,hostfwd=tcp:8080-:80 256 bzImage console=hvc0 ip=dhcp`;
