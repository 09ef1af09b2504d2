// Validates a cloud assembly with the CDK's own schema package: the manifest with schema
// validation on, and every asset manifest (validated only when TESTING_CDK=1, as the CDK does
// in its own tests). Usage: node validate-assembly.js <cdk.out>
'use strict';
const path = require('path');
const schema = require('@aws-cdk/cloud-assembly-schema');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node validate-assembly.js <cloud assembly folder>');
  process.exit(2);
}
process.env.TESTING_CDK = '1';
const manifest = schema.Manifest.loadAssemblyManifest(path.join(dir, 'manifest.json'), { validateSchema: true });
let stacks = 0;
let assetManifests = 0;
for (const [id, artifact] of Object.entries(manifest.artifacts || {})) {
  if (artifact.type === 'aws:cloudformation:stack') stacks++;
  if (artifact.type === 'cdk:asset-manifest') {
    schema.Manifest.loadAssetManifest(path.join(dir, artifact.properties.file));
    assetManifests++;
  }
}
console.log(JSON.stringify({ version: manifest.version, stacks, assetManifests }));
