// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Anchor: a public, timestamped record of a Merkle log's signed tree head.
/// @notice Anyone may call anchor(); what makes an anchor ours is the tree head's Ed25519 signature,
///         checked off-chain by `nexus verify`. The contract keeps no state: the event in the
///         transaction receipt is the record (about 25k gas per call, no storage write).
/// @dev    root and headId are indexed so that a node can be asked for the anchors of a root or of
///         a tree head (eth_getLogs by topic); treeSize rides in the log's data.
contract Anchor {
    /// @param root     RFC 6962 Merkle root of the log at treeSize leaves
    /// @param headId   SHA-256 of the signed tree head's canonical bytes
    /// @param treeSize number of leaves the root covers
    event Anchored(bytes32 indexed root, bytes32 indexed headId, uint64 treeSize);

    function anchor(bytes32 root, uint64 treeSize, bytes32 headId) external {
        emit Anchored(root, headId, treeSize);
    }
}
