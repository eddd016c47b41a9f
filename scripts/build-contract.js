#!/usr/bin/env node
// Compile contracts/Anchor.sol offline with solcjs (npm `solc`, pinned in package.json) and write the
// ABI + bytecode the evm anchor backend loads: nexus_kernel/anchoring/evm/Anchor.json.
//
//   node scripts/build-contract.js              # rebuild the committed artifact
//   node scripts/build-contract.js --out FILE   # write elsewhere (the test compares with the committed one)
//
// Settings are fixed (evm target paris for portability, optimizer on) so the output is byte-for-byte
// reproducible: the metadata hash covers the source text and these settings, nothing of this machine.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const root = path.resolve(__dirname, '..');
const sourceName = 'contracts/Anchor.sol';
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const out = outIndex >= 0 ? path.resolve(args[outIndex + 1]) : path.join(root, 'nexus_kernel/anchoring/evm/Anchor.json');

const input = {
  language: 'Solidity',
  sources: { [sourceName]: { content: fs.readFileSync(path.join(root, sourceName), 'utf8') } },
  settings: {
    evmVersion: 'paris',
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { Anchor: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contract = output.contracts[sourceName].Anchor;
const artifact = {
  contractName: 'Anchor',
  sourceName,
  compiler: `solc-js ${solc.version()}`,
  settings: { evmVersion: input.settings.evmVersion, optimizer: input.settings.optimizer },
  abi: contract.abi,
  bytecode: '0x' + contract.evm.bytecode.object,
  deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
};
fs.writeFileSync(out, JSON.stringify(artifact, null, 2) + '\n');
console.log(`wrote ${path.relative(process.cwd(), out)} (${contract.evm.bytecode.object.length / 2} bytes of init code)`);
