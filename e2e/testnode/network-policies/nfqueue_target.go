// Added to sigs.k8s.io/kube-network-policies by kube-baseline's e2e/node when it builds the
// NetworkPolicy implementation for the test node (with nfqueue-target.patch).

package networkpolicy

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// nfqueueTarget hands a packet to userspace queue `num` through the xtables NFQUEUE target
// (revision 3, run by nft_compat inside the same nftables table) instead of nftables' own
// queue expression: kernels built without CONFIG_NFT_QUEUE (like the CI machines') reject
// that expression, but have NETFILTER_XT_TARGET_NFQUEUE.
func nfqueueTarget(num uint16, bypass bool) expr.Any {
	const flagBypass = 0x01 // NFQ_FLAG_BYPASS: accept when no program listens
	var flags uint16
	if bypass {
		flags = flagBypass
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum; __u16 queues_total; __u16 flags; },
	// padded to 8 bytes as the kernel's XT_ALIGN expects.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:2], num)
	binary.NativeEndian.PutUint16(info[2:4], 1)
	binary.NativeEndian.PutUint16(info[4:6], flags)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
